# METADATA
# title: Scoring decision
# description: >-
#   Turns a model score and hard rules into an action after inference. Every
#   enforced rule that fires adds a hit {code, action}; the action is the most
#   severe one among the hits (decline > review > approve), approve when none
#   fired. Shadow rules are reported and never change the action. Settings are
#   read from data.riskgraph.decision.config
#   (policies/riskgraph/decision/data.json).
# custom:
#   entrypoint: riskgraph/decision/result
#   settings: data.riskgraph.decision.config
package riskgraph.decision

import rego.v1

import data.riskgraph.decision.config

# METADATA
# title: Decision result
# description: >-
#   The one entrypoint. Always defined: {"action", "reasons", "shadow",
#   "policy"}. reasons are the sorted codes of every enforced rule that fired
#   (not only those of the final action); shadow the sorted codes of the shadow
#   rules that fired. Invalid input gives at least "review" with reason
#   "invalid_input"; it never gives "approve".
# entrypoint: true
# custom:
#   kind: entrypoint
#   output: '{"action": "approve"|"review"|"decline", "reasons": [string], "shadow": [string], "policy": "decision"}'
result := {
	"action": action,
	"reasons": sort({hit.code | some hit in hits}),
	"shadow": sort(shadow_hits),
	"policy": "decision",
}

# METADATA
# title: Action
# description: The most severe action among the enforced hits; approve when none fired.
# custom:
#   kind: helper
#   output: '"approve"|"review"|"decline"'
action := "decline" if {
	"decline" in hit_actions
} else := "review" if {
	"review" in hit_actions
} else := "approve"

# METADATA
# title: Hit actions
# description: The set of actions asked for by the enforced rules that fired.
# custom:
#   kind: helper
hit_actions contains hit.action if some hit in hits

# METADATA
# title: Entity kinds
# description: >-
#   Schema, not a setting: for each entity kind, the field of input.entities
#   that holds its id and the key of its list under config.blocklist and
#   config.allowlist. The kind names the reason code, e.g. blocklist_card.
# custom:
#   kind: schema
entity_kinds := {
	"account": {"field": "account_id", "list": "accounts"},
	"card": {"field": "card_id", "list": "cards"},
	"merchant": {"field": "merchant_id", "list": "merchants"},
	"device": {"field": "device_id", "list": "devices"},
	"ip": {"field": "ip", "list": "ips"},
}

# METADATA
# title: Well-formed input
# description: >-
#   tenant and currency are strings; score is a number in [0, 1]; amount a
#   number >= 0; features.device_distinct_accounts_5m a number; entities an
#   object whose values are strings (absent entities are left out).
# custom:
#   kind: helper
#   reason: invalid_input
valid_input if {
	is_string(input.tenant)
	valid_score
	is_number(input.amount)
	input.amount >= 0
	is_string(input.currency)
	is_number(input.features.device_distinct_accounts_5m)
	is_object(input.entities)
	every id in input.entities {
		is_string(id)
	}
}

# METADATA
# title: Valid score
# description: score is a number in [0, 1].
# custom:
#   kind: helper
valid_score if {
	is_number(input.score)
	input.score >= 0
	input.score <= 1
}

# METADATA
# title: Score threshold
# description: >-
#   The named threshold ("review_threshold" or "decline_threshold") from
#   config.tenant_overrides[tenant] when set there, otherwise the global one.
# custom:
#   kind: helper
#   settings: [review_threshold, decline_threshold, tenant_overrides]
threshold(name) := value if {
	value := config.tenant_overrides[input.tenant][name]
} else := config[name]

# METADATA
# title: Block-listed entity kinds
# description: >-
#   Kinds whose id in input.entities is a key of config.blocklist[<list>]
#   (an object from id to a note saying why it is listed).
# custom:
#   kind: helper
#   settings: [blocklist]
blocklisted contains kind if {
	some kind, spec in entity_kinds
	id := input.entities[spec.field]
	config.blocklist[spec.list][id]
}

# METADATA
# title: Allow-listed entity kinds
# description: >-
#   Kinds whose id in input.entities is a key of config.allowlist[<list>]
#   (an object from id to a note saying why it is listed).
# custom:
#   kind: helper
#   settings: [allowlist]
allowlisted contains kind if {
	some kind, spec in entity_kinds
	id := input.entities[spec.field]
	config.allowlist[spec.list][id]
}

# METADATA
# title: On the allow-list
# description: At least one entity of the payment is allow-listed.
# custom:
#   kind: helper
on_allowlist if count(allowlisted) > 0

# METADATA
# title: Currency limit
# description: The amount limit for input.currency; undefined for an unknown currency.
# custom:
#   kind: helper
#   settings: [amount_limits]
currency_limit := config.amount_limits[input.currency]

# METADATA
# title: Invalid input
# description: >-
#   The input is malformed (see valid_input): fail closed to review. Rules that
#   can still be evaluated (block list, amount limit, device farm) keep applying.
# custom:
#   kind: rule
#   reason: invalid_input
#   action: review
hits contains {"code": "invalid_input", "action": "review"} if not valid_input

# METADATA
# title: Block-listed entity
# description: An entity of the payment is on the block list; beats the allow-list.
# custom:
#   kind: rule
#   reason: blocklist_<kind>
#   action: decline
#   settings: [blocklist]
hits contains {"code": concat("_", ["blocklist", kind]), "action": "decline"} if some kind in blocklisted

# METADATA
# title: Allow-listed entity
# description: >-
#   An entity of the payment is on the allow-list: approve, and the score
#   rules do not apply. Hard rules (block list, amount, device farm) still do.
# custom:
#   kind: rule
#   reason: allowlist
#   action: approve
#   settings: [allowlist]
hits contains {"code": "allowlist", "action": "approve"} if on_allowlist

# METADATA
# title: Amount limit
# description: The amount is above the limit for its currency.
# custom:
#   kind: rule
#   reason: amount_limit
#   action: decline
#   settings: [amount_limits]
hits contains {"code": "amount_limit", "action": "decline"} if {
	is_number(input.amount)
	input.amount > currency_limit
}

# METADATA
# title: Unknown currency
# description: The currency has no amount limit configured, so the limit cannot be checked.
# custom:
#   kind: rule
#   reason: unknown_currency
#   action: review
#   settings: [amount_limits]
hits contains {"code": "unknown_currency", "action": "review"} if not currency_limit

# METADATA
# title: Device farm
# description: >-
#   The device was used by at least config.device_farm_min_accounts distinct
#   accounts in the last 5 minutes.
# custom:
#   kind: rule
#   reason: device_farm
#   action: review
#   settings: [device_farm_min_accounts]
hits contains {"code": "device_farm", "action": "review"} if {
	is_number(input.features.device_distinct_accounts_5m)
	input.features.device_distinct_accounts_5m >= config.device_farm_min_accounts
}

# METADATA
# title: Score decline
# description: Not allow-listed and score >= the decline threshold.
# custom:
#   kind: rule
#   reason: score_decline
#   action: decline
#   settings: [decline_threshold, tenant_overrides]
hits contains {"code": "score_decline", "action": "decline"} if {
	not on_allowlist
	valid_score
	input.score >= threshold("decline_threshold")
}

# METADATA
# title: Score review
# description: Not allow-listed and review threshold <= score < decline threshold.
# custom:
#   kind: rule
#   reason: score_review
#   action: review
#   settings: [review_threshold, decline_threshold, tenant_overrides]
hits contains {"code": "score_review", "action": "review"} if {
	not on_allowlist
	valid_score
	input.score >= threshold("review_threshold")
	input.score < threshold("decline_threshold")
}

# METADATA
# title: Shadow rules
# description: >-
#   Each entry {code, path, at_least} of config.shadow fires when the number
#   at path in the input (e.g. ["score"] or ["features",
#   "device_distinct_accounts_5m"]) is >= at_least. Reported in result.shadow
#   only; never changes the action. Shadow rules are evaluated on their own,
#   without the allow-list, and only on well-formed input.
# custom:
#   kind: shadow
#   settings: [shadow]
shadow_hits contains rule.code if {
	valid_input
	some rule in config.shadow
	value := object.get(input, rule.path, null)
	is_number(value)
	value >= rule.at_least
}
