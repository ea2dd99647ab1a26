# METADATA
# title: Scoring decision tests
# description: >-
#   Each enforced rule and each shadow rule with a positive and a negative
#   case, the severity order, allow-list vs block list, per-tenant thresholds
#   and invalid input, against a fixed test configuration; plus a smoke test
#   against the shipped data.json.
package riskgraph.decision_test

import rego.v1

import data.riskgraph.decision

cfg := {
	"review_threshold": 0.5,
	"decline_threshold": 0.9,
	"tenant_overrides": {
		"strict": {"review_threshold": 0.2},
		"lenient": {"review_threshold": 0.7, "decline_threshold": 0.99},
	},
	"device_farm_min_accounts": 3,
	"amount_limits": {"EUR": 10000, "USD": 12000},
	"blocklist": {
		"accounts": {"acc-bad": "chargeback ring"},
		"cards": {"card-bad": "stolen"},
		"merchants": {"m-bad": "shell merchant"},
		"devices": {"dev-bad": "emulator farm"},
		"ips": {"203.0.113.66": "proxy exit"},
	},
	"allowlist": {
		"accounts": {"acc-vip": "treasury account"},
		"cards": {},
		"merchants": {"m-good": "utility company"},
		"devices": {},
		"ips": {},
	},
	"shadow": [
		{"code": "shadow_score_review", "path": ["score"], "at_least": 0.3},
		{"code": "shadow_device_farm", "path": ["features", "device_distinct_accounts_5m"], "at_least": 2},
	],
}

payment := {
	"tenant": "acme",
	"score": 0.1,
	"amount": 120.5,
	"currency": "EUR",
	"features": {"device_distinct_accounts_5m": 1},
	"entities": {
		"account_id": "acc-1",
		"card_id": "card-1",
		"merchant_id": "m-1",
		"device_id": "dev-1",
		"ip": "198.51.100.7",
	},
	"model": {"version": "gnn-v1", "served_by": "gnn"},
}

# payment with top-level fields replaced (nested objects are merged).
with_fields(fields) := object.union(payment, fields)

with_entity(field, id) := with_fields({"entities": {field: id}})

# payment with one top-level field replaced outright (no merge).
replaced(field, value) := object.union(object.remove(payment, [field]), {field: value})

# --- the whole result ---------------------------------------------------------

test_low_score_approves_with_no_reasons if {
	r := decision.result with input as payment with data.riskgraph.decision.config as cfg
	r == {"action": "approve", "reasons": [], "shadow": [], "policy": "decision"}
}

test_result_defined_for_empty_input if {
	r := decision.result with input as {} with data.riskgraph.decision.config as cfg
	r == {"action": "review", "reasons": ["invalid_input", "unknown_currency"], "shadow": [], "policy": "decision"}
}

test_shipped_data_decides if {
	r := decision.result with input as with_fields({"score": 0.95})
	r.action == "decline"
	r.reasons == ["score_decline"]
	r.shadow == ["shadow_score_review"]
}

test_reasons_list_every_enforced_hit_sorted if {
	doc := with_fields({"score": 0.6, "amount": 20000, "features": {"device_distinct_accounts_5m": 4}})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r == {
		"action": "decline",
		"reasons": ["amount_limit", "device_farm", "score_review"],
		"shadow": ["shadow_device_farm", "shadow_score_review"],
		"policy": "decision",
	}
}

# --- score_review / score_decline ---------------------------------------------

test_score_below_review_threshold_approves if {
	r := decision.result with input as with_fields({"score": 0.4999}) with data.riskgraph.decision.config as cfg
	r.action == "approve"
}

test_score_at_review_threshold_reviews if {
	r := decision.result with input as with_fields({"score": 0.5}) with data.riskgraph.decision.config as cfg
	r.action == "review"
	r.reasons == ["score_review"]
}

test_score_just_below_decline_threshold_reviews if {
	r := decision.result with input as with_fields({"score": 0.8999}) with data.riskgraph.decision.config as cfg
	r.reasons == ["score_review"]
}

test_score_at_decline_threshold_declines_without_review_reason if {
	r := decision.result with input as with_fields({"score": 0.9}) with data.riskgraph.decision.config as cfg
	r.action == "decline"
	r.reasons == ["score_decline"]
}

test_score_one_declines if {
	r := decision.result with input as with_fields({"score": 1}) with data.riskgraph.decision.config as cfg
	r.action == "decline"
}

test_score_zero_approves if {
	r := decision.result with input as with_fields({"score": 0}) with data.riskgraph.decision.config as cfg
	r.action == "approve"
}

# --- per-tenant thresholds ----------------------------------------------------

test_tenant_override_lowers_review_threshold if {
	r := decision.result with input as with_fields({"tenant": "strict", "score": 0.25}) with data.riskgraph.decision.config as cfg
	r.reasons == ["score_review"]
}

test_tenant_override_keeps_global_decline_threshold if {
	r := decision.result with input as with_fields({"tenant": "strict", "score": 0.9}) with data.riskgraph.decision.config as cfg
	r.reasons == ["score_decline"]
}

test_tenant_override_raises_thresholds if {
	r1 := decision.result with input as with_fields({"tenant": "lenient", "score": 0.65}) with data.riskgraph.decision.config as cfg
	r1.action == "approve"
	r2 := decision.result with input as with_fields({"tenant": "lenient", "score": 0.95}) with data.riskgraph.decision.config as cfg
	r2.reasons == ["score_review"]
	r3 := decision.result with input as with_fields({"tenant": "lenient", "score": 0.99}) with data.riskgraph.decision.config as cfg
	r3.reasons == ["score_decline"]
}

test_threshold_falls_back_to_global if {
	decision.threshold("review_threshold") == 0.5 with input as payment with data.riskgraph.decision.config as cfg
	decision.threshold("review_threshold") == 0.2 with input as with_fields({"tenant": "strict"})
		with data.riskgraph.decision.config as cfg
}

# --- device_farm --------------------------------------------------------------

test_device_shared_by_three_accounts_reviews if {
	r := decision.result with input as with_fields({"features": {"device_distinct_accounts_5m": 3}}) with data.riskgraph.decision.config as cfg
	r.action == "review"
	r.reasons == ["device_farm"]
}

test_device_shared_by_two_accounts_is_not_farm if {
	r := decision.result with input as with_fields({"features": {"device_distinct_accounts_5m": 2}}) with data.riskgraph.decision.config as cfg
	r.action == "approve"
	r.reasons == []
}

test_device_farm_does_not_soften_decline if {
	doc := with_fields({"score": 0.95, "features": {"device_distinct_accounts_5m": 9}})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r.action == "decline"
}

test_device_farm_beats_allowlist if {
	doc := object.union(with_entity("account_id", "acc-vip"), {"features": {"device_distinct_accounts_5m": 5}})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r.action == "review"
	r.reasons == ["allowlist", "device_farm"]
}

# --- amount_limit / unknown_currency ------------------------------------------

test_amount_above_limit_declines if {
	r := decision.result with input as with_fields({"amount": 10000.01}) with data.riskgraph.decision.config as cfg
	r.action == "decline"
	r.reasons == ["amount_limit"]
}

test_amount_at_limit_is_allowed if {
	r := decision.result with input as with_fields({"amount": 10000}) with data.riskgraph.decision.config as cfg
	r.action == "approve"
}

test_limit_is_per_currency if {
	r1 := decision.result with input as with_fields({"amount": 11000, "currency": "USD"}) with data.riskgraph.decision.config as cfg
	r1.action == "approve"
	r2 := decision.result with input as with_fields({"amount": 11000, "currency": "EUR"}) with data.riskgraph.decision.config as cfg
	r2.action == "decline"
}

test_amount_limit_beats_allowlist if {
	doc := object.union(with_entity("merchant_id", "m-good"), {"amount": 50000})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r.action == "decline"
	r.reasons == ["allowlist", "amount_limit"]
}

test_unknown_currency_reviews if {
	r := decision.result with input as with_fields({"currency": "XTS"}) with data.riskgraph.decision.config as cfg
	r.action == "review"
	r.reasons == ["unknown_currency"]
}

test_known_currency_is_not_unknown if {
	r := decision.result with input as payment with data.riskgraph.decision.config as cfg
	not "unknown_currency" in r.reasons
}

# --- block list ---------------------------------------------------------------

test_each_blocklisted_entity_declines_with_its_code if {
	cases := {
		"account_id": ["acc-bad", "blocklist_account"],
		"card_id": ["card-bad", "blocklist_card"],
		"merchant_id": ["m-bad", "blocklist_merchant"],
		"device_id": ["dev-bad", "blocklist_device"],
		"ip": ["203.0.113.66", "blocklist_ip"],
	}
	every field, c in cases {
		r := decision.result with input as with_entity(field, c[0]) with data.riskgraph.decision.config as cfg
		r == {"action": "decline", "reasons": [c[1]], "shadow": [], "policy": "decision"}
	}
}

test_id_listed_under_other_kind_is_not_blocked if {
	r := decision.result with input as with_entity("account_id", "card-bad") with data.riskgraph.decision.config as cfg
	r.action == "approve"
}

test_several_blocklisted_entities_all_reported if {
	doc := with_fields({"entities": {"card_id": "card-bad", "ip": "203.0.113.66"}})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r.reasons == ["blocklist_card", "blocklist_ip"]
}

test_blocklist_beats_allowlist if {
	doc := with_fields({"entities": {"account_id": "acc-vip", "card_id": "card-bad"}})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r.action == "decline"
	r.reasons == ["allowlist", "blocklist_card"]
}

test_blocklist_declines_even_with_invalid_input if {
	doc := with_fields({"score": "high", "entities": {"device_id": "dev-bad"}})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r.action == "decline"
	r.reasons == ["blocklist_device", "invalid_input"]
}

# --- allow-list ---------------------------------------------------------------

test_allowlist_beats_decline_score if {
	r := decision.result with input as object.union(with_entity("account_id", "acc-vip"), {"score": 0.99}) with data.riskgraph.decision.config as cfg
	r.action == "approve"
	r.reasons == ["allowlist"]
}

test_allowlist_beats_review_score if {
	r := decision.result with input as object.union(with_entity("merchant_id", "m-good"), {"score": 0.6}) with data.riskgraph.decision.config as cfg
	r == {"action": "approve", "reasons": ["allowlist"], "shadow": ["shadow_score_review"], "policy": "decision"}
}

test_unlisted_entities_are_not_allowlisted if {
	not decision.on_allowlist with input as payment with data.riskgraph.decision.config as cfg
}

test_allowlist_does_not_hide_invalid_input if {
	r := decision.result with input as object.union(with_entity("account_id", "acc-vip"), {"score": null}) with data.riskgraph.decision.config as cfg
	r.action == "review"
	r.reasons == ["allowlist", "invalid_input"]
}

# --- invalid_input ------------------------------------------------------------

test_missing_score_reviews_as_invalid if {
	r := decision.result with input as object.remove(payment, ["score"]) with data.riskgraph.decision.config as cfg
	r == {"action": "review", "reasons": ["invalid_input"], "shadow": [], "policy": "decision"}
}

test_invalid_fields_review if {
	bad := [
		{"score": "0.2"},
		{"score": -0.1},
		{"score": 1.01},
		{"amount": "100"},
		{"amount": -5},
		{"tenant": 7},
		{"features": {"device_distinct_accounts_5m": "3"}},
		{"entities": {"card_id": 4242}},
		{"entities": []},
	]
	every fields in bad {
		r := decision.result with input as object.union(payment, fields) with data.riskgraph.decision.config as cfg
		r == {"action": "review", "reasons": ["invalid_input"], "shadow": [], "policy": "decision"}
	}
}

test_non_string_currency_is_invalid_and_unknown if {
	r := decision.result with input as with_fields({"currency": 978}) with data.riskgraph.decision.config as cfg
	r.reasons == ["invalid_input", "unknown_currency"]
}

test_missing_feature_reviews_as_invalid if {
	doc := replaced("features", {})
	r := decision.result with input as doc with data.riskgraph.decision.config as cfg
	r.reasons == ["invalid_input"]
}

test_string_amount_never_trips_amount_limit if {
	r := decision.result with input as with_fields({"amount": "999999999"}) with data.riskgraph.decision.config as cfg
	not "amount_limit" in r.reasons
}

test_partial_entities_are_valid if {
	r1 := decision.result with input as replaced("entities", {}) with data.riskgraph.decision.config as cfg
	r1.action == "approve"
	r2 := decision.result with input as replaced("entities", {"account_id": "acc-1"}) with data.riskgraph.decision.config as cfg
	r2.action == "approve"
}

test_invalid_score_never_approves_or_scores if {
	r := decision.result with input as with_fields({"score": 2}) with data.riskgraph.decision.config as cfg
	r.action == "review"
	not "score_decline" in r.reasons
}

# --- shadow rules -------------------------------------------------------------

test_shadow_fires_without_changing_action if {
	r := decision.result with input as with_fields({"score": 0.35}) with data.riskgraph.decision.config as cfg
	r.action == "approve"
	r.reasons == []
	r.shadow == ["shadow_score_review"]
}

test_shadow_below_threshold_does_not_fire if {
	r := decision.result with input as with_fields({"score": 0.29}) with data.riskgraph.decision.config as cfg
	r.shadow == []
}

test_shadow_on_nested_feature if {
	r := decision.result with input as with_fields({"features": {"device_distinct_accounts_5m": 2}}) with data.riskgraph.decision.config as cfg
	r.action == "approve"
	r.shadow == ["shadow_device_farm"]
}

test_shadow_ignores_missing_or_non_numeric_value if {
	r1 := decision.result with input as object.remove(payment, ["score"]) with data.riskgraph.decision.config as cfg
	r1.shadow == []
	r2 := decision.result with input as with_fields({"score": "0.95"}) with data.riskgraph.decision.config as cfg
	r2.shadow == []
}

test_shadow_ignores_non_numeric_path if {
	odd := object.union(cfg, {"shadow": [{"code": "shadow_currency", "path": ["currency"], "at_least": 0}]})
	r := decision.result with input as payment with data.riskgraph.decision.config as odd
	r.shadow == []
}

test_no_shadow_rules_configured if {
	r := decision.result with input as with_fields({"score": 0.95})
		with data.riskgraph.decision.config as object.union(cfg, {"shadow": []})
	r.shadow == []
	r.action == "decline"
}

# --- severity -----------------------------------------------------------------

test_review_beats_approve if {
	r := decision.result with input as object.union(with_entity("account_id", "acc-vip"), {"features": {"device_distinct_accounts_5m": 3}}) with data.riskgraph.decision.config as cfg
	r.action == "review"
}

test_decline_beats_review if {
	r := decision.result with input as object.union(with_fields({"currency": "XTS"}), {"entities": {"ip": "203.0.113.66"}}) with data.riskgraph.decision.config as cfg
	r.action == "decline"
}
