# METADATA
# title: Scoring gate tests
# description: >-
#   Each deny reason with a positive and a negative case, against a fixed test
#   configuration; plus a smoke test against the shipped data.json.
package riskgraph.gate_test

import rego.v1

import data.riskgraph.gate

cfg := {
	"kill_switch": false,
	"purposes": ["payment_authorisation", "backtest", "review"],
	"rate_tiers": ["standard", "premium"],
	"default_rate_tier": "standard",
	"client_tenants": {"svc-shared": ["acme", "globex"]},
	"tenants": {
		"acme": {
			"kill_switch": false,
			"regions": ["eu-west-1"],
			"model_versions": ["gnn-v1", "fallback-v1"],
		},
		"globex": {
			"kill_switch": false,
			"regions": ["us-east-1"],
			"model_versions": ["gnn-v2"],
		},
	},
}

ok_input := {
	"client": {"id": "svc-acme", "tenant": "acme", "roles": ["scorer"], "rate_tier": "premium"},
	"request": {
		"tenant": "acme",
		"purpose": "payment_authorisation",
		"region": "eu-west-1",
		"model_version": "gnn-v1",
	},
}

with_request(field, value) := object.union(ok_input, {"request": object.union(ok_input.request, {field: value})})

with_client(field, value) := object.union(ok_input, {"client": object.union(ok_input.client, {field: value})})

# object.union merges nested objects, so removing a field needs the parent rebuilt.
without_request(field) := {"client": ok_input.client, "request": object.remove(ok_input.request, [field])}

without_client(field) := {"client": object.remove(ok_input.client, [field]), "request": ok_input.request}

# --- the whole result ---------------------------------------------------------

test_allows_well_formed_request if {
	gate.result == {"allow": true, "reasons": [], "rate_tier": "premium", "policy": "gate"} with input as ok_input
		with data.riskgraph.gate.config as cfg
}

test_result_defined_for_empty_input if {
	gate.result == {
		"allow": false,
		"reasons": [
			"invalid_input",
			"model_not_allowed",
			"purpose_not_allowed",
			"region_not_allowed",
			"tenant_mismatch",
			"unknown_tenant",
		],
		"rate_tier": "standard",
		"policy": "gate",
	} with input as {}
		with data.riskgraph.gate.config as cfg
}

test_shipped_data_allows_acme_request if {
	r := gate.result with input as ok_input
	r.allow == true
	r.reasons == []
}

test_reasons_are_sorted_and_allow_false if {
	doc := object.union(with_request("purpose", "marketing"), {"request": {"region": "mars-1"}})
	r := gate.result with input as doc with data.riskgraph.gate.config as cfg
	r.allow == false
	r.reasons == ["purpose_not_allowed", "region_not_allowed"]
}

# --- invalid_input ------------------------------------------------------------

test_missing_field_is_invalid_input if {
	r := gate.result with input as without_request("model_version") with data.riskgraph.gate.config as cfg
	"invalid_input" in r.reasons
}

test_non_string_field_is_invalid_input if {
	r := gate.result with input as with_client("id", 42) with data.riskgraph.gate.config as cfg
	"invalid_input" in r.reasons
}

test_each_request_field_must_be_a_string if {
	every field in ["tenant", "purpose", "region", "model_version"] {
		r := gate.result with input as with_request(field, ["x"]) with data.riskgraph.gate.config as cfg
		"invalid_input" in r.reasons
	}
}

test_equal_non_string_tenants_are_mismatch if {
	doc := {"client": object.union(ok_input.client, {"tenant": 5}), "request": object.union(ok_input.request, {"tenant": 5})}
	r := gate.result with input as doc with data.riskgraph.gate.config as cfg
	"tenant_mismatch" in r.reasons
}

test_missing_client_tenant_is_invalid_and_mismatch if {
	r := gate.result with input as without_client("tenant") with data.riskgraph.gate.config as cfg
	r.reasons == ["invalid_input", "tenant_mismatch"]
}

test_well_formed_input_is_not_invalid if {
	r := gate.result with input as ok_input with data.riskgraph.gate.config as cfg
	not "invalid_input" in r.reasons
}

# --- tenant_mismatch ----------------------------------------------------------

test_other_tenant_is_mismatch if {
	r := gate.result with input as with_request("tenant", "globex") with data.riskgraph.gate.config as cfg
	"tenant_mismatch" in r.reasons
}

test_own_tenant_is_not_mismatch if {
	r := gate.result with input as ok_input with data.riskgraph.gate.config as cfg
	not "tenant_mismatch" in r.reasons
}

test_client_listed_for_tenant_may_score_it if {
	doc := object.union(with_client("id", "svc-shared"), {"request": {"region": "us-east-1", "model_version": "gnn-v2"}})
	r := gate.result with input as object.union(doc, {"request": {"tenant": "globex"}})
		with data.riskgraph.gate.config as cfg
	r.allow == true
}

test_listed_client_still_limited_to_its_tenants if {
	doc := object.union(with_client("id", "svc-shared"), {"request": {"tenant": "initech"}})
	r := gate.result with input as doc with data.riskgraph.gate.config as cfg
	"tenant_mismatch" in r.reasons
}

test_missing_request_tenant_is_mismatch if {
	r := gate.result with input as without_request("tenant") with data.riskgraph.gate.config as cfg
	"tenant_mismatch" in r.reasons
}

# --- purpose_not_allowed ------------------------------------------------------

test_unknown_purpose_not_allowed if {
	r := gate.result with input as with_request("purpose", "marketing") with data.riskgraph.gate.config as cfg
	"purpose_not_allowed" in r.reasons
}

test_each_configured_purpose_allowed if {
	every purpose in cfg.purposes {
		r := gate.result with input as with_request("purpose", purpose) with data.riskgraph.gate.config as cfg
		r.reasons == []
	}
}

# --- unknown_tenant -----------------------------------------------------------

test_unconfigured_tenant_is_unknown if {
	doc := object.union(with_client("tenant", "initech"), {"request": {"tenant": "initech"}})
	r := gate.result with input as doc with data.riskgraph.gate.config as cfg
	r.reasons == ["model_not_allowed", "region_not_allowed", "unknown_tenant"]
}

test_configured_tenant_is_known if {
	r := gate.result with input as ok_input with data.riskgraph.gate.config as cfg
	not "unknown_tenant" in r.reasons
}

# --- region_not_allowed -------------------------------------------------------

test_region_of_other_tenant_not_allowed if {
	r := gate.result with input as with_request("region", "us-east-1") with data.riskgraph.gate.config as cfg
	r.reasons == ["region_not_allowed"]
}

test_tenant_region_allowed if {
	r := gate.result with input as ok_input with data.riskgraph.gate.config as cfg
	not "region_not_allowed" in r.reasons
}

# --- model_not_allowed --------------------------------------------------------

test_model_not_on_tenant_list_not_allowed if {
	r := gate.result with input as with_request("model_version", "gnn-v2") with data.riskgraph.gate.config as cfg
	r.reasons == ["model_not_allowed"]
}

test_model_matching_prefix_pattern_allowed if {
	patterned := object.union(cfg, {"tenants": {"acme": {"model_versions": ["gnn-2026*"]}}})
	r := gate.result with input as with_request("model_version", "gnn-20260321-3a8045b3")
		with data.riskgraph.gate.config as patterned
	r.reasons == []
}

test_model_not_matching_prefix_pattern_not_allowed if {
	patterned := object.union(cfg, {"tenants": {"acme": {"model_versions": ["gnn-2026*"]}}})
	r := gate.result with input as with_request("model_version", "gnn-20250101-aaaa")
		with data.riskgraph.gate.config as patterned
	r.reasons == ["model_not_allowed"]
}

test_star_only_at_the_end_is_a_pattern if {
	patterned := object.union(cfg, {"tenants": {"acme": {"model_versions": ["gnn-*-rc"]}}})
	r := gate.result with input as with_request("model_version", "gnn-x-rc")
		with data.riskgraph.gate.config as patterned
	r.reasons == ["model_not_allowed"]
}

test_fallback_model_on_list_allowed if {
	r := gate.result with input as with_request("model_version", "fallback-v1") with data.riskgraph.gate.config as cfg
	r.reasons == []
}

# --- kill_switch --------------------------------------------------------------

test_global_kill_switch_denies if {
	r := gate.result with input as ok_input
		with data.riskgraph.gate.config as object.union(cfg, {"kill_switch": true})
	r == {"allow": false, "reasons": ["kill_switch"], "rate_tier": "premium", "policy": "gate"}
}

test_tenant_kill_switch_denies_that_tenant if {
	killed := object.union(cfg, {"tenants": {"acme": {"kill_switch": true}}})
	r := gate.result with input as ok_input with data.riskgraph.gate.config as killed
	r.reasons == ["kill_switch"]
}

test_tenant_kill_switch_spares_other_tenants if {
	killed := object.union(cfg, {"tenants": {"acme": {"kill_switch": true}}})
	doc := object.union(ok_input, {
		"client": {"tenant": "globex"},
		"request": {"tenant": "globex", "region": "us-east-1", "model_version": "gnn-v2"},
	})
	r := gate.result with input as doc with data.riskgraph.gate.config as killed
	r.allow == true
}

test_both_kill_switches_report_one_reason if {
	killed := object.union(cfg, {"kill_switch": true, "tenants": {"acme": {"kill_switch": true}}})
	r := gate.result with input as ok_input with data.riskgraph.gate.config as killed
	r.reasons == ["kill_switch"]
}

test_kill_switch_must_be_literally_true if {
	odd := object.union(cfg, {"kill_switch": "yes"})
	r := gate.result with input as ok_input with data.riskgraph.gate.config as odd
	r.allow == true
}

# --- rate_tier ----------------------------------------------------------------

test_known_rate_tier_passed_through if {
	gate.rate_tier == "premium" with input as ok_input with data.riskgraph.gate.config as cfg
}

test_unknown_rate_tier_falls_back_to_default if {
	gate.rate_tier == "standard" with input as with_client("rate_tier", "platinum")
		with data.riskgraph.gate.config as cfg
}

test_missing_rate_tier_falls_back_to_default if {
	gate.rate_tier == "standard" with input as without_client("rate_tier")
		with data.riskgraph.gate.config as cfg
}

test_rate_tier_reported_when_denied if {
	r := gate.result with input as with_request("tenant", "globex")
		with data.riskgraph.gate.config as cfg
	r.allow == false
	r.rate_tier == "premium"
}
