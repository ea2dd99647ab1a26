// One case: what was paid, why it was flagged, what it is connected to, what it resembles,
// and the verdict (f = fraud, l = legitimate, e = escalate; Esc or b = back to the queue).

import { api } from "../api.js";
import {
  chip,
  contributionBar,
  entityValue,
  formatMoney,
  formatNumber,
  h,
  headRow,
  labelChip,
  replace,
  scoreBar,
  statusChip,
  timeEl,
} from "../dom.js";
import { renderSubgraph } from "../graph.js";
import { reportError, setStatus } from "../status.js";
import { caseHash, QUEUE_HASH_KEY } from "./queue.js";
import { receiptEl, verdictBar } from "./verdict.js";

const ENTITIES = [
  ["account_id", "Account"],
  ["card_id", "Card"],
  ["merchant_id", "Merchant"],
  ["device_id", "Device"],
  ["ip", "IP"],
];

// A narrative cites cases as [case-…]; those become links to the case.
const CITATION = /\[([^\s[\]]+)\]/g;

function panel(title, ...body) {
  const id = `p-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  return h(
    "section",
    { class: "panel", "aria-labelledby": id },
    h("h2", { id }, title),
    ...body,
  );
}

function row(label, value) {
  return [h("dt", {}, label), h("dd", {}, value ?? h("span", { class: "muted" }, "—"))];
}

function narrative(text, knownCases) {
  const out = [];
  let last = 0;
  for (const m of String(text ?? "").matchAll(CITATION)) {
    const id = m[1];
    if (!id.startsWith("case-") && !knownCases.has(id)) continue;
    out.push(text.slice(last, m.index));
    out.push("[", h("a", { href: caseHash(id), class: "mono citation" }, id), "]");
    last = m.index + m[0].length;
  }
  out.push(String(text ?? "").slice(last));
  return h("p", { class: "narrative" }, out);
}

function details(c, unmask) {
  return panel(
    "Transaction",
    h(
      "dl",
      { class: "facts" },
      row("Transaction", h("span", { class: "mono" }, c.transaction_id)),
      row("Amount", h("span", { class: "num strong" }, formatMoney(c.amount, c.currency))),
      row("Created", timeEl(c.created_at)),
      row("Action", chip(c.action ?? "—", `action-${c.action}`)),
      row("Served by", c.served_by && `${c.served_by} · ${c.model_version ?? "?"}`),
      row("Assignee", c.assignee),
      ENTITIES.map(([key, label]) => row(label, entityValue(c.entities?.[key]))),
    ),
    unmask
      ? null
      : h("p", { class: "help" }, "Personal data is masked: your role may not view PII."),
  );
}

function why(c, evidence) {
  const precedentIds = new Set((evidence.precedents ?? []).map((p) => p.case_id));
  const hits = evidence.policy_hits ?? [];
  return panel(
    "Why it was flagged",
    h("div", { class: "why-score" }, h("span", { class: "why-label" }, "Score"), scoreBar(c.score)),
    h(
      "div",
      { class: "chips" },
      h("span", { class: "why-label" }, "Reasons"),
      c.reasons?.length ? c.reasons.map((r) => chip(r)) : h("span", { class: "muted" }, "none"),
    ),
    hits.length
      ? h(
          "div",
          { class: "chips" },
          h("span", { class: "why-label" }, "Policy"),
          hits.map((p) => chip(p, "policy")),
        )
      : null,
    evidence.narrative ? narrative(evidence.narrative, precedentIds) : null,
  );
}

function drivers(list) {
  if (!list?.length) return panel("Drivers", h("p", { class: "muted" }, "No drivers recorded."));
  const max = Math.max(...list.map((d) => Math.abs(d.contribution ?? 0)));
  return panel(
    "Drivers",
    h(
      "p",
      { class: "help" },
      "Entities that drove the score, most influential first. Contribution: how much " +
        "removing the entity changes the logit (+ raised the score).",
    ),
    h(
      "table",
      { class: "grid compact" },
      h("thead", {}, headRow("Type", "Entity", "Hop", "Label", "Contribution")),
      h(
        "tbody",
        {},
        list.map((d) =>
          h(
            "tr",
            {},
            h(
              "td",
              {},
              h("span", { class: `swatch type-${d.type}`, "aria-hidden": "true" }),
              d.type,
            ),
            h("td", {}, entityValue(d.id)),
            h("td", { class: "num" }, d.hop),
            h("td", {}, labelChip(d.label)),
            h("td", {}, contributionBar(d.contribution, max)),
          ),
        ),
      ),
    ),
  );
}

function timeline(events) {
  if (!events?.length) return panel("Timeline", h("p", { class: "muted" }, "No events."));
  return panel(
    "Timeline",
    h(
      "ol",
      { class: "timeline" },
      events.map((e) =>
        h(
          "li",
          {},
          timeEl(e.time),
          chip(e.type ?? "event", "event"),
          h("span", { class: "timeline-account" }, entityValue(e.account_id)),
          h("span", { class: "timeline-summary" }, e.summary ?? ""),
        ),
      ),
    ),
  );
}

function precedents(evidence) {
  const list = evidence.precedents ?? [];
  const mix = evidence.precedent_mix ?? {};
  const fraud = mix.fraud ?? 0;
  const legit = mix.legit ?? 0;
  const bar = h("div", { class: "mix-bar", "aria-hidden": "true" });
  if (fraud + legit > 0) {
    const f = h("span", { class: "mix-fraud" });
    f.style.width = `${(100 * fraud) / (fraud + legit)}%`;
    bar.append(f);
  }
  return panel(
    "Similar cases",
    h(
      "p",
      { class: "mix" },
      h("span", {}, `${list.length} similar past cases: `),
      h("strong", { class: "text-fraud" }, `${fraud} fraud`),
      " · ",
      h("strong", { class: "text-legit" }, `${legit} legit`),
      bar,
    ),
    list.length
      ? h(
          "table",
          { class: "grid compact precedents", "aria-label": "Similar cases" },
          h("thead", {}, headRow("Case", "Outcome", "Distance", "Shared", "Score", "Created")),
          h(
            "tbody",
            {},
            list.map((p) =>
              h(
                "tr",
                {},
                h("td", {}, h("a", { href: caseHash(p.case_id), class: "mono" }, p.case_id)),
                h("td", {}, statusChip(p.status)),
                h("td", { class: "num" }, formatNumber(p.distance, 3)),
                h(
                  "td",
                  {},
                  (p.shared_entities ?? []).length
                    ? p.shared_entities.map((s) => chip(s, "shared"))
                    : h("span", { class: "muted" }, "none"),
                ),
                h("td", {}, scoreBar(p.score)),
                h("td", {}, timeEl(p.created_at)),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No similar cases found."),
  );
}

/** The status and the scoring action, next to the case title. */
function headChips(c) {
  return [statusChip(c.status), chip(c.action ?? "—", `action-${c.action}`)];
}

function verdictInfo(c) {
  if (!c.verdict_by && !c.verdict_at) return null;
  return h(
    "p",
    { class: "verdict-info", title: c.verdict_note ?? null },
    "Last verdict by ",
    h("strong", {}, c.verdict_by ?? "?"),
    c.verdict_at ? [" at ", timeEl(c.verdict_at)] : null,
    c.verdict_note ? [": “", c.verdict_note, "”"] : null,
  );
}

export function mount({ main, route, signal, navigate }) {
  const caseId = route.arg;
  const back = () => navigate(sessionStorage.getItem(QUEUE_HASH_KEY) ?? "#/queue");
  const status = h("span", { class: "head-status" });
  const title = h("h1", { id: "case-title" }, "Case ", h("span", { class: "mono" }, caseId));
  const lastVerdict = h("div", { class: "verdict-slot" });
  const body = h(
    "div",
    { class: "case-grid", "aria-busy": "true" },
    h("p", { class: "panel muted" }, "Loading case…"),
  );

  const bar = verdictBar({
    idPrefix: "case",
    what: "this case",
    submit: (verdict, note) => api.verdict(caseId, verdict, note),
    onDone: (result, verdict) => {
      const c = result.case ?? {};
      replace(status, headChips(c));
      replace(lastVerdict, verdictInfo(c));
      const r = result.receipt ?? {};
      setStatus(`Verdict “${verdict}” recorded for ${caseId}: audit seq ${r.seq}.`, "ok");
      return receiptEl(r);
    },
  });

  replace(
    main,
    h(
      "article",
      { class: "case", "aria-labelledby": "case-title" },
      h(
        "div",
        { class: "page-head" },
        h(
          "a",
          { href: sessionStorage.getItem(QUEUE_HASH_KEY) ?? "#/queue", class: "back" },
          "‹ Queue",
        ),
        title,
        status,
        lastVerdict,
      ),
      body,
      bar.element,
    ),
  );

  const load = async () => {
    setStatus(`Loading ${caseId}…`, "busy");
    try {
      const data = await api.case(caseId, { signal });
      const c = data.case ?? {};
      const evidence = data.evidence ?? {};
      replace(status, headChips(c));
      replace(lastVerdict, verdictInfo(c));
      replace(
        body,
        h(
          "div",
          { class: "case-col" },
          why(c, evidence),
          details(c, data.unmask_pii),
          drivers(evidence.drivers),
          timeline(data.timeline),
        ),
        h(
          "div",
          { class: "case-col" },
          panel("Subgraph", renderSubgraph(data.subgraph, c.transaction_id)),
          precedents(evidence),
        ),
      );
      body.setAttribute("aria-busy", "false");
      bar.enable();
      setStatus(`Case ${caseId} loaded.`, "ok");
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(
        body,
        h(
          "div",
          { class: "panel panel-error", role: "alert" },
          h("p", {}, `Could not load case ${caseId}: ${err.message}`),
          h("button", { type: "button", class: "btn", onclick: load }, "Retry"),
        ),
      );
      reportError(err);
    }
  };
  load();

  return {
    keys: {
      f: () => bar.submit("fraud"),
      l: () => bar.submit("legit"),
      e: () => bar.submit("escalate"),
      n: () => bar.focusNote(),
      Escape: back,
      b: back,
    },
    hints: [
      ["f", "confirm fraud"],
      ["l", "legitimate"],
      ["e", "escalate"],
      ["n", "note"],
      ["Esc b", "back to queue"],
    ],
  };
}
