// Rings: alerts connected through shared entities, grouped; pick one, see its cases, and
// label them all at once (POST /v1/rings/{id}/verdict).

import { api } from "../api.js";
import {
  chip,
  entityValue,
  formatMoney,
  formatNumber,
  h,
  headRow,
  messageRow,
  replace,
  scoreBar,
  statusChip,
} from "../dom.js";
import { reportError, setStatus } from "../status.js";
import { caseHash } from "./queue.js";
import { receiptEl, verdictBar } from "./verdict.js";

const ringHash = (ringId) => `#/rings/${encodeURIComponent(ringId)}`;
const FETCH_CONCURRENCY = 4; // case look-ups in flight at once for a ring's case list

/** Map `fn` over `items` with at most `limit` calls pending. */
async function mapLimited(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function sharedChips(shared) {
  return (shared ?? []).map((s) =>
    h("span", { class: "chip chip-shared" }, `${s.kind}: `, entityValue(s.value)),
  );
}

function ringDetail(ring, signal) {
  const rows = new Map(); // case id → status cell
  const tbody = h(
    "tbody",
    {},
    ring.case_ids.map((id) => {
      const cells = {
        score: h("td", {}, h("span", { class: "muted" }, "…")),
        amount: h("td", { class: "num" }),
        reasons: h("td", {}),
        status: h("td", {}),
      };
      rows.set(id, cells);
      return h(
        "tr",
        {},
        h("td", {}, h("a", { href: caseHash(id), class: "mono" }, id)),
        cells.score,
        cells.amount,
        cells.reasons,
        cells.status,
      );
    }),
  );
  const fill = (c) => {
    const cells = rows.get(c.case_id);
    if (!cells) return;
    replace(cells.score, scoreBar(c.score));
    replace(cells.amount, formatMoney(c.amount, c.currency));
    replace(cells.reasons, (c.reasons ?? []).map((r) => chip(r)));
    replace(cells.status, statusChip(c.status));
  };
  mapLimited(ring.case_ids, FETCH_CONCURRENCY, async (id) => {
    try {
      fill((await api.case(id, { signal })).case);
    } catch (err) {
      if (err.name === "AbortError") return;
      const failed = h("span", { class: "text-error", title: err.message }, "unavailable");
      replace(rows.get(id).score, failed);
      reportError(err);
    }
  });

  const bar = verdictBar({
    idPrefix: "ring",
    what: `all ${ring.case_ids.length} cases of ${ring.ring_id}`,
    // One key press must not label a whole ring: bulk verdicts take a button press.
    shortcuts: false,
    submit: (verdict, note) => api.ringVerdict(ring.ring_id, verdict, note),
    onDone: (result, verdict) => {
      for (const c of result.cases ?? []) fill(c);
      const receipts = result.receipts ?? [];
      const what = `${receipts.length} cases of ${ring.ring_id}`;
      setStatus(`Verdict “${verdict}” recorded for ${what}.`, "ok");
      return h(
        "span",
        {},
        `${receipts.length} cases: `,
        receipts.map((r, i) => [i ? ", " : "", receiptEl(r)]),
      );
    },
  });
  bar.enable();

  const element = h(
    "section",
    { class: "panel ring-detail", "aria-labelledby": "ring-title" },
    h("h2", { id: "ring-title" }, "Ring ", h("span", { class: "mono" }, ring.ring_id)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Shared"),
      h("dd", { class: "chips" }, sharedChips(ring.shared_entities)),
      h("dt", {}, "Max score"),
      h("dd", {}, scoreBar(ring.max_score)),
      h("dt", {}, "Total amount"),
      h("dd", {}, formatNumber(ring.total_amount)),
    ),
    h(
      "table",
      { class: "grid compact", "aria-label": `Cases of ${ring.ring_id}` },
      h("thead", {}, headRow("Case", "Score", "Amount", "Reasons", "Status")),
      tbody,
    ),
    bar.element,
  );
  return { element, bar };
}

export function mount({ main, route, signal, navigate }) {
  const chosen = route.arg;
  const tbody = h("tbody", {}, messageRow(5, "Loading rings…"));
  const detail = h(
    "div",
    { class: "ring-side" },
    h("p", { class: "panel muted" }, "Select a ring to see its cases."),
  );
  replace(
    main,
    h(
      "section",
      { class: "rings", "aria-labelledby": "rings-title" },
      h(
        "div",
        { class: "page-head" },
        h("h1", { id: "rings-title" }, "Rings"),
        h("span", { class: "help" }, "Alerts connected through shared entities."),
      ),
      h(
        "div",
        { class: "rings-grid" },
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "grid", "aria-label": "Rings" },
            h(
              "thead",
              {},
              headRow("Ring", "Cases", "Shared entities", "Max score", "Total amount"),
            ),
            tbody,
          ),
        ),
        detail,
      ),
    ),
  );

  let rings = [];
  let rows = [];
  let selected = -1;
  let bar = null; // the chosen ring's verdict bar
  const select = (i) => {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach((r, k) => {
      r.tabIndex = k === selected ? 0 : -1;
      if (k === selected) r.setAttribute("aria-current", "true");
      else r.removeAttribute("aria-current");
    });
    rows[selected].focus({ preventScroll: true });
    rows[selected].scrollIntoView({ block: "nearest" });
  };
  const open = (i) => rings[i] && navigate(ringHash(rings[i].ring_id));

  (async () => {
    setStatus("Loading rings…", "busy");
    try {
      rings = (await api.rings({ signal })).rings ?? [];
      rows = rings.map((r, i) =>
        h(
          "tr",
          {
            tabindex: "-1",
            class: r.ring_id === chosen ? "chosen" : null,
            onclick: () => open(i),
            onfocus: () => {
              selected = i;
            },
          },
          h("td", { class: "mono" }, r.ring_id),
          h("td", { class: "num" }, r.case_ids.length),
          h("td", { class: "chips" }, sharedChips(r.shared_entities)),
          h("td", {}, scoreBar(r.max_score)),
          h("td", { class: "num" }, formatNumber(r.total_amount)),
        ),
      );
      if (rows.length) replace(tbody, rows);
      else replace(tbody, messageRow(5, "No rings right now."));
      const at = rings.findIndex((r) => r.ring_id === chosen);
      if (at >= 0) {
        const shown = ringDetail(rings[at], signal);
        bar = shown.bar;
        replace(detail, shown.element);
      } else if (chosen) {
        const gone = `No ring ${chosen}: its cases may have been resolved.`;
        replace(detail, h("p", { class: "panel panel-error" }, gone));
      }
      if (rows.length) select(at >= 0 ? at : 0);
      setStatus(`${rings.length} rings.`, "ok");
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(tbody, messageRow(5, `Could not load rings: ${err.message}`, "error"));
      reportError(err);
    }
  })();

  const move = (d) => () => select(selected < 0 ? 0 : selected + d);
  return {
    keys: {
      j: move(1),
      k: move(-1),
      ArrowDown: move(1),
      ArrowUp: move(-1),
      Enter: () => open(selected),
      n: () => bar?.focusNote(),
      b: () => navigate("#/queue"),
    },
    hints: [
      ["j k", "move"],
      ["Enter", "open ring"],
      ["n", "note"],
      ["b", "queue"],
    ],
  };
}
