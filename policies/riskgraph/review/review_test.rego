# METADATA
# title: Analyst review access tests
# description: >-
#   Every role against every action, tenant isolation, assignment, PII
#   unmasking and invalid input, against a fixed test configuration; plus a
#   smoke test against the shipped data.json.
package riskgraph.review_test

import rego.v1

import data.riskgraph.review

cfg := {
	"actions": ["view_case", "view_pii", "label", "override", "bulk_label"],
	"role_permissions": {
		"analyst": ["view_case", "label"],
		"senior_analyst": ["view_case", "label", "override", "bulk_label", "view_pii"],
		"auditor": ["view_case"],
		"admin": ["view_case", "view_pii", "label", "override", "bulk_label"],
	},
	"assignee_actions": ["label"],
	"assignee_exempt_roles": ["senior_analyst", "admin"],
}

# Expected permission matrix: role -> actions it may take on its own tenant's case.
granted := {
	"analyst": {"view_case", "label"},
	"senior_analyst": {"view_case", "label", "override", "bulk_label", "view_pii"},
	"auditor": {"view_case"},
	"admin": {"view_case", "view_pii", "label", "override", "bulk_label"},
}

# A named helper, not "x == (a in b)": opa fmt drops those parentheses, which
# turns the expression into "(x == a) in b".
default expected_allow(_, _) := false

expected_allow(role, action) if action in granted[role]

request(roles, action) := {
	"user": {"id": "u-1", "tenant": "acme", "roles": roles},
	"action": action,
	"case": {"tenant": "acme", "assignee": "u-1"},
}

# --- the whole result ---------------------------------------------------------

test_analyst_views_own_tenant_case if {
	r := review.result with input as request(["analyst"], "view_case") with data.riskgraph.review.config as cfg
	r == {"allow": true, "reasons": [], "unmask_pii": false, "policy": "review"}
}

test_result_defined_for_empty_input if {
	r := review.result with input as {} with data.riskgraph.review.config as cfg
	r == {
		"allow": false,
		"reasons": ["invalid_input", "tenant_mismatch", "unknown_action"],
		"unmask_pii": false,
		"policy": "review",
	}
}

test_shipped_data_matches_matrix if {
	every role, _ in granted {
		every action in cfg.actions {
			r := review.result with input as request([role], action)
			r.allow == expected_allow(role, action)
		}
	}
}

# --- role -> permission matrix ------------------------------------------------

test_each_role_allowed_exactly_its_actions if {
	every role, _ in granted {
		every action in cfg.actions {
			r := review.result with input as request([role], action) with data.riskgraph.review.config as cfg
			r.allow == expected_allow(role, action)
		}
	}
}

test_denied_action_reason_is_action_not_permitted if {
	r1 := review.result with input as request(["analyst"], "override") with data.riskgraph.review.config as cfg
	r1.reasons == ["action_not_permitted"]
	r2 := review.result with input as request(["auditor"], "label") with data.riskgraph.review.config as cfg
	r2.reasons == ["action_not_permitted"]
	r3 := review.result with input as request(["auditor"], "view_pii") with data.riskgraph.review.config as cfg
	r3.reasons == ["action_not_permitted"]
	r4 := review.result with input as request(["analyst"], "bulk_label") with data.riskgraph.review.config as cfg
	r4.reasons == ["action_not_permitted"]
}

test_roles_combine if {
	r := review.result with input as request(["auditor", "analyst"], "label") with data.riskgraph.review.config as cfg
	r.allow == true
}

test_unknown_role_grants_nothing if {
	r := review.result with input as request(["superuser"], "view_case") with data.riskgraph.review.config as cfg
	r.reasons == ["action_not_permitted"]
}

test_no_roles_grants_nothing if {
	r := review.result with input as request([], "view_case") with data.riskgraph.review.config as cfg
	r.reasons == ["action_not_permitted"]
}

# --- unknown_action -----------------------------------------------------------

test_unknown_action_denied if {
	r := review.result with input as request(["admin"], "delete_case") with data.riskgraph.review.config as cfg
	r.reasons == ["unknown_action"]
}

test_known_action_is_not_unknown if {
	r := review.result with input as request(["analyst"], "override") with data.riskgraph.review.config as cfg
	not "unknown_action" in r.reasons
}

# --- tenant_mismatch ----------------------------------------------------------

test_cross_tenant_denied_for_every_role if {
	every role in object.keys(granted) {
		doc := object.union(request([role], "view_case"), {"case": {"tenant": "globex"}})
		r := review.result with input as doc with data.riskgraph.review.config as cfg
		r == {"allow": false, "reasons": ["tenant_mismatch"], "unmask_pii": false, "policy": "review"}
	}
}

test_equal_non_string_tenants_are_mismatch if {
	doc := {"user": {"id": "u-1", "tenant": 5, "roles": ["admin"]}, "action": "view_case", "case": {"tenant": 5}}
	r := review.result with input as doc with data.riskgraph.review.config as cfg
	r.reasons == ["invalid_input", "tenant_mismatch"]
}

test_missing_case_tenant_is_mismatch if {
	doc := {"user": {"id": "u-1", "tenant": "acme", "roles": ["analyst"]}, "action": "view_case", "case": {}}
	r := review.result with input as doc with data.riskgraph.review.config as cfg
	r.reasons == ["invalid_input", "tenant_mismatch"]
}

# --- not_assignee -------------------------------------------------------------

test_analyst_cannot_label_case_assigned_to_other if {
	doc := object.union(request(["analyst"], "label"), {"case": {"assignee": "u-2"}})
	r := review.result with input as doc with data.riskgraph.review.config as cfg
	r.reasons == ["not_assignee"]
}

test_analyst_labels_unassigned_case if {
	doc := {"user": {"id": "u-1", "tenant": "acme", "roles": ["analyst"]}, "action": "label", "case": {"tenant": "acme"}}
	r1 := review.result with input as doc with data.riskgraph.review.config as cfg
	r1.allow == true
	r2 := review.result with input as object.union(doc, {"case": {"assignee": null}}) with data.riskgraph.review.config as cfg
	r2.allow == true
}

test_analyst_views_case_assigned_to_other if {
	doc := object.union(request(["analyst"], "view_case"), {"case": {"assignee": "u-2"}})
	r := review.result with input as doc with data.riskgraph.review.config as cfg
	r.allow == true
}

test_exempt_roles_label_case_assigned_to_other if {
	every role in ["senior_analyst", "admin"] {
		doc := object.union(request([role], "label"), {"case": {"assignee": "u-2"}})
		r := review.result with input as doc with data.riskgraph.review.config as cfg
		r.allow == true
	}
}

# --- unmask_pii ---------------------------------------------------------------

test_pii_unmasked_for_senior_analyst if {
	r1 := review.result with input as request(["senior_analyst"], "view_pii") with data.riskgraph.review.config as cfg
	r1 == {"allow": true, "reasons": [], "unmask_pii": true, "policy": "review"}
	r2 := review.result with input as request(["senior_analyst"], "view_case") with data.riskgraph.review.config as cfg
	r2.unmask_pii == true
}

test_pii_masked_for_roles_without_view_pii if {
	every role in ["analyst", "auditor"] {
		r := review.result with input as request([role], "view_case") with data.riskgraph.review.config as cfg
		r == {"allow": true, "reasons": [], "unmask_pii": false, "policy": "review"}
	}
}

test_pii_masked_when_denied if {
	doc := object.union(request(["senior_analyst"], "view_pii"), {"case": {"tenant": "globex"}})
	r := review.result with input as doc with data.riskgraph.review.config as cfg
	r.allow == false
	r.unmask_pii == false
}

# --- invalid_input ------------------------------------------------------------

test_invalid_fields_denied if {
	base := request(["admin"], "view_case")
	bad := [
		{"user": {"id": 1}},
		{"user": {"tenant": ["acme"]}},
		{"user": {"roles": "admin"}},
		{"case": {"assignee": 7}},
	]
	every fields in bad {
		r := review.result with input as object.union(base, fields) with data.riskgraph.review.config as cfg
		r.allow == false
		"invalid_input" in r.reasons
	}
}

test_non_string_action_is_invalid_and_unknown if {
	r := review.result with input as request(["admin"], 3) with data.riskgraph.review.config as cfg
	r.reasons == ["invalid_input", "unknown_action"]
}

test_well_formed_input_is_valid if {
	review.valid_input with input as request(["analyst"], "label")
}
