# METADATA
# title: Scoring gate
# description: >-
#   Decides, before any inference, whether a client may score a request:
#   tenant isolation, allowed purpose, allowed region, model allow-list and
#   kill switches. Settings are read from data.riskgraph.gate.config
#   (policies/riskgraph/gate/data.json).
# custom:
#   entrypoint: riskgraph/gate/result
#   settings: data.riskgraph.gate.config
package riskgraph.gate

import rego.v1

import data.riskgraph.gate.config

# METADATA
# title: Gate result
# description: >-
#   The one entrypoint. Always defined: {"allow", "reasons", "rate_tier",
#   "policy"}; allow is true exactly when reasons is empty. Reasons are sorted
#   machine codes.
# entrypoint: true
# custom:
#   kind: entrypoint
#   output: '{"allow": bool, "reasons": [string], "rate_tier": string, "policy": "gate"}'
result := {
	"allow": allow,
	"reasons": sort(reasons),
	"rate_tier": rate_tier,
	"policy": "gate",
}

# METADATA
# title: Allow
# description: The request may be scored when no deny reason fired.
# custom:
#   kind: helper
#   output: bool
allow := count(reasons) == 0

# METADATA
# title: Rate tier
# description: >-
#   The client's rate tier when it is one of config.rate_tiers, otherwise
#   config.default_rate_tier. Reported even when the request is denied.
# custom:
#   kind: helper
#   settings: [rate_tiers, default_rate_tier]
rate_tier := input.client.rate_tier if {
	input.client.rate_tier in config.rate_tiers
} else := config.default_rate_tier

# METADATA
# title: Tenant settings
# description: >-
#   The settings of the requested tenant (regions, model_versions,
#   kill_switch); undefined when the tenant is not configured.
# custom:
#   kind: helper
#   settings: [tenants]
tenant := config.tenants[input.request.tenant]

# METADATA
# title: Well-formed input
# description: >-
#   client.id, client.tenant, request.tenant, request.purpose, request.region
#   and request.model_version are strings.
# custom:
#   kind: helper
#   reason: invalid_input
valid_input if {
	is_string(input.client.id)
	is_string(input.client.tenant)
	is_string(input.request.tenant)
	is_string(input.request.purpose)
	is_string(input.request.region)
	is_string(input.request.model_version)
}

# METADATA
# scope: document
# title: Tenant permitted
# description: >-
#   The client scores for its own tenant, or for a tenant listed for its id in
#   config.client_tenants.
# custom:
#   kind: helper
#   settings: [client_tenants]
tenant_permitted if {
	is_string(input.request.tenant)
	input.request.tenant == input.client.tenant
}

tenant_permitted if input.request.tenant in config.client_tenants[input.client.id]

# METADATA
# title: Purpose allowed
# description: >-
#   request.purpose is in config.purposes. A helper rule rather than an inline
#   "not x in xs": that form is undefined, not true, when x is missing.
# custom:
#   kind: helper
#   settings: [purposes]
purpose_allowed if input.request.purpose in config.purposes

# METADATA
# title: Region allowed
# description: request.region is in the requested tenant's regions.
# custom:
#   kind: helper
#   settings: [tenants.<tenant>.regions]
region_allowed if input.request.region in tenant.regions

# METADATA
# title: Model allowed
# description: request.model_version is in the requested tenant's model_versions.
# custom:
#   kind: helper
#   settings: [tenants.<tenant>.model_versions]
model_allowed if input.request.model_version in tenant.model_versions

# METADATA
# title: Model allowed by prefix
# description: >-
#   A model_versions entry ending in "*" allows every version that starts with the part before
#   it (e.g. "gnn-2026*"), so a promotion can allow a model family without listing each build.
# custom:
#   kind: helper
#   settings: [tenants.<tenant>.model_versions]
model_allowed if {
	some pattern in tenant.model_versions
	endswith(pattern, "*")
	startswith(input.request.model_version, trim_suffix(pattern, "*"))
}

# METADATA
# title: Invalid input
# description: A required field is missing or is not a string.
# custom:
#   kind: rule
#   reason: invalid_input
reasons contains "invalid_input" if not valid_input

# METADATA
# title: Global kill switch
# description: config.kill_switch is true; every request is denied.
# custom:
#   kind: rule
#   reason: kill_switch
#   settings: [kill_switch]
reasons contains "kill_switch" if config.kill_switch == true

# METADATA
# title: Tenant kill switch
# description: The requested tenant's kill_switch is true.
# custom:
#   kind: rule
#   reason: kill_switch
#   settings: [tenants.<tenant>.kill_switch]
reasons contains "kill_switch" if tenant.kill_switch == true

# METADATA
# title: Unknown tenant
# description: The requested tenant has no entry in config.tenants.
# custom:
#   kind: rule
#   reason: unknown_tenant
#   settings: [tenants]
reasons contains "unknown_tenant" if not tenant

# METADATA
# title: Tenant mismatch
# description: The client may not score for the requested tenant.
# custom:
#   kind: rule
#   reason: tenant_mismatch
#   settings: [client_tenants]
reasons contains "tenant_mismatch" if not tenant_permitted

# METADATA
# title: Purpose not allowed
# description: request.purpose is not in config.purposes.
# custom:
#   kind: rule
#   reason: purpose_not_allowed
#   settings: [purposes]
reasons contains "purpose_not_allowed" if not purpose_allowed

# METADATA
# title: Region not allowed
# description: request.region is not in the requested tenant's regions.
# custom:
#   kind: rule
#   reason: region_not_allowed
#   settings: [tenants.<tenant>.regions]
reasons contains "region_not_allowed" if not region_allowed

# METADATA
# title: Model not allowed
# description: request.model_version is not in the requested tenant's model_versions.
# custom:
#   kind: rule
#   reason: model_not_allowed
#   settings: [tenants.<tenant>.model_versions]
reasons contains "model_not_allowed" if not model_allowed
