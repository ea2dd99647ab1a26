# METADATA
# title: Analyst review access
# description: >-
#   Decides whether a review-UI user may take an action on a case, and whether
#   PII is shown unmasked. Permissions come from the user's roles through
#   data.riskgraph.review.config.role_permissions
#   (policies/riskgraph/review/data.json). Tenants are isolated for every role.
# custom:
#   entrypoint: riskgraph/review/result
#   settings: data.riskgraph.review.config
package riskgraph.review

import rego.v1

import data.riskgraph.review.config

# METADATA
# title: Review result
# description: >-
#   The one entrypoint. Always defined: {"allow", "reasons", "unmask_pii",
#   "policy"}; allow is true exactly when reasons is empty; unmask_pii is
#   true only when allowed and the user holds the view_pii permission.
# entrypoint: true
# custom:
#   kind: entrypoint
#   output: '{"allow": bool, "reasons": [string], "unmask_pii": bool, "policy": "review"}'
result := {
	"allow": allow,
	"reasons": sort(reasons),
	"unmask_pii": unmask_pii,
	"policy": "review",
}

# METADATA
# title: Allow
# description: The action may be taken when no deny reason fired.
# custom:
#   kind: helper
#   output: bool
allow := count(reasons) == 0

# METADATA
# scope: document
# title: Unmask PII
# description: >-
#   PII in what the user is shown is unmasked only when the request is allowed
#   and one of the user's roles grants view_pii; masked otherwise.
# custom:
#   kind: helper
#   output: bool
default unmask_pii := false

unmask_pii if {
	allow
	"view_pii" in permissions
}

# METADATA
# title: Permissions
# description: The union of the permissions of the user's roles; unknown roles grant nothing.
# custom:
#   kind: helper
#   settings: [role_permissions]
permissions contains permission if {
	some role in input.user.roles
	some permission in config.role_permissions[role]
}

# METADATA
# title: Well-formed input
# description: >-
#   user.id, user.tenant, action and case.tenant are strings, user.roles an
#   array, and case.assignee, when present, a string or null.
# custom:
#   kind: helper
#   reason: invalid_input
valid_input if {
	is_string(input.user.id)
	is_string(input.user.tenant)
	is_array(input.user.roles)
	is_string(input.action)
	is_string(input.case.tenant)
	valid_assignee
}

# METADATA
# scope: document
# title: Valid assignee
# description: case.assignee is absent, null or a string.
# custom:
#   kind: helper
valid_assignee if object.get(input, ["case", "assignee"], null) == null

valid_assignee if is_string(input.case.assignee)

# METADATA
# title: Known action
# description: action is one of config.actions.
# custom:
#   kind: helper
#   settings: [actions]
known_action if input.action in config.actions

# METADATA
# title: Same tenant
# description: The user and the case belong to the same tenant.
# custom:
#   kind: helper
same_tenant if {
	is_string(input.user.tenant)
	input.user.tenant == input.case.tenant
}

# METADATA
# title: Assigned to someone else
# description: The case has an assignee and it is not the user.
# custom:
#   kind: helper
assigned_to_other if {
	is_string(input.case.assignee)
	input.case.assignee != input.user.id
}

# METADATA
# title: Exempt from assignment
# description: One of the user's roles is in config.assignee_exempt_roles.
# custom:
#   kind: helper
#   settings: [assignee_exempt_roles]
assignee_exempt if {
	some role in input.user.roles
	role in config.assignee_exempt_roles
}

# METADATA
# title: Invalid input
# description: A required field is missing or has the wrong type.
# custom:
#   kind: rule
#   reason: invalid_input
reasons contains "invalid_input" if not valid_input

# METADATA
# title: Unknown action
# description: action is not one of config.actions.
# custom:
#   kind: rule
#   reason: unknown_action
#   settings: [actions]
reasons contains "unknown_action" if not known_action

# METADATA
# title: Tenant mismatch
# description: The case belongs to another tenant; denied for every role.
# custom:
#   kind: rule
#   reason: tenant_mismatch
reasons contains "tenant_mismatch" if not same_tenant

# METADATA
# title: Action not permitted
# description: A known action that none of the user's roles grants.
# custom:
#   kind: rule
#   reason: action_not_permitted
#   settings: [role_permissions]
reasons contains "action_not_permitted" if {
	known_action
	not input.action in permissions
}

# METADATA
# title: Not the assignee
# description: >-
#   An action in config.assignee_actions on a case assigned to someone else,
#   by a user with no role in config.assignee_exempt_roles.
# custom:
#   kind: rule
#   reason: not_assignee
#   settings: [assignee_actions, assignee_exempt_roles]
reasons contains "not_assignee" if {
	input.action in config.assignee_actions
	assigned_to_other
	not assignee_exempt
}
