// The review queue: filters, sortable columns, pagination; j/k to move, Enter to open.
//
// Filters, sort and page live in the URL (#/queue?status=open&sort=amount…), so a reload or a
// shared link shows the same page and Back returns to it.

import { api } from "../api.js";
import {
  chip,
  entityValue,
  formatAge,
  formatMoney,
  formatTime,
  h,
  messageRow,
  replace,
  scoreBar,
  statusChip,
} from "../dom.js";
import { reportError, setStatus } from "../status.js";

export const QUEUE_HASH_KEY = "riskgraph.review.queue";
const PAGE_SIZE = 50;
const STATUSES = ["open", "escalated", "fraud", "legit", "all"];
const SORTS = { score: "Score", amount: "Amount", age: "Age" };
const ENTITY_COLUMNS = [
  ["account_id", "Account"],
  ["card_id", "Card"],
  ["merchant_id", "Merchant"],
  ["device_id", "Device"],
  ["ip", "IP"],
];

// Reason codes seen on any page this session: the reason filter offers them.
const seenReasons = new Set();
// The case last opened from the queue, selected again on return.
let lastCaseId = null;

/** The queue's state from the URL, with defaults. */
function readState(params) {
  const offset = Number.parseInt(params.get("offset") ?? "0", 10);
  return {
    status: STATUSES.includes(params.get("status")) ? params.get("status") : "open",
    reason: params.get("reason") ?? "",
    min_score: params.get("min_score") ?? "",
    sort: params.get("sort") in SORTS ? params.get("sort") : "score",
    descending: params.get("descending") !== "false",
    offset: Number.isFinite(offset) && offset > 0 ? offset : 0,
  };
}

function hashFor(state) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v !== "") q.set(k, String(v));
  return `#/queue?${q}`;
}

export function caseHash(caseId) {
  return `#/case/${encodeURIComponent(caseId)}`;
}

export function mount({ main, route, signal, navigate }) {
  const state = readState(route.params);
  sessionStorage.setItem(QUEUE_HASH_KEY, hashFor(state));
  if (state.reason) seenReasons.add(state.reason);
  const go = (changes) => navigate(hashFor({ ...state, offset: 0, ...changes }));

  // Filters -------------------------------------------------------------------------------
  const statusSelect = h(
    "select",
    { id: "f-status", onchange: () => go({ status: statusSelect.value }) },
    STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, s)),
  );
  const reasonSelect = h("select", {
    id: "f-reason",
    onchange: () => go({ reason: reasonSelect.value }),
  });
  const fillReasons = () => {
    replace(
      reasonSelect,
      h("option", { value: "" }, "any reason"),
      [...seenReasons]
        .sort()
        .map((r) => h("option", { value: r, selected: r === state.reason }, r)),
    );
  };
  fillReasons();
  const minScore = h("input", {
    id: "f-min-score",
    type: "number",
    min: "0",
    max: "1",
    step: "0.05",
    inputmode: "decimal",
    placeholder: "0.00",
    value: state.min_score,
    onchange: () => {
      if (minScore.checkValidity()) go({ min_score: minScore.value });
      else setStatus("Min score must be a number between 0 and 1.", "error");
    },
  });
  const filters = h(
    "form",
    { class: "toolbar", "aria-label": "Queue filters", onsubmit: (ev) => ev.preventDefault() },
    h("div", { class: "field" }, h("label", { for: "f-status" }, "Status"), statusSelect),
    h("div", { class: "field" }, h("label", { for: "f-reason" }, "Reason"), reasonSelect),
    h("div", { class: "field" }, h("label", { for: "f-min-score" }, "Min score"), minScore),
  );

  // Table ---------------------------------------------------------------------------------
  const sortHeader = (key) => {
    const active = state.sort === key;
    const arrow = active ? (state.descending ? " ▼" : " ▲") : "";
    return h(
      "th",
      {
        scope: "col",
        class: `sortable col-${key}`,
        "aria-sort": active ? (state.descending ? "descending" : "ascending") : null,
      },
      h(
        "button",
        {
          type: "button",
          class: "sort-button",
          id: `sort-${key}`,
          title: `Sort by ${SORTS[key].toLowerCase()}`,
          onclick: () => go({ sort: key, descending: active ? !state.descending : true }),
        },
        SORTS[key],
        h("span", { class: "sort-arrow", "aria-hidden": "true" }, arrow),
      ),
    );
  };
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "grid queue-table", "aria-label": "Cases", "aria-busy": "true" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        sortHeader("score"),
        h("th", { scope: "col", class: "col-tx" }, "Transaction"),
        sortHeader("amount"),
        sortHeader("age"),
        h("th", { scope: "col", class: "col-action" }, "Action"),
        h("th", { scope: "col", class: "col-reasons" }, "Reasons"),
        ENTITY_COLUMNS.map(([, label]) => h("th", { scope: "col", class: "col-entity" }, label)),
        h("th", { scope: "col", class: "col-status" }, "Status"),
        h("th", { scope: "col", class: "col-assignee" }, "Assignee"),
      ),
    ),
    tbody,
  );
  const columns = 8 + ENTITY_COLUMNS.length;
  const placeholder = (text, kind) => replace(tbody, messageRow(columns, text, kind));
  placeholder("Loading cases…");

  // Count and pager -----------------------------------------------------------------------
  const count = h("span", { class: "count", "aria-live": "polite" }, "");
  const prev = h(
    "button",
    { type: "button", class: "btn", id: "page-prev", disabled: true, onclick: () => page(-1) },
    "‹ Previous",
  );
  const next = h(
    "button",
    { type: "button", class: "btn", id: "page-next", disabled: true, onclick: () => page(1) },
    "Next ›",
  );
  let total = 0;
  const page = (dir) => {
    const offset = state.offset + dir * PAGE_SIZE;
    if (offset >= 0 && offset < total) navigate(hashFor({ ...state, offset }));
  };

  replace(
    main,
    h(
      "section",
      { class: "queue", "aria-labelledby": "queue-title" },
      h(
        "div",
        { class: "page-head" },
        h("h1", { id: "queue-title" }, "Review queue"),
        count,
        h("div", { class: "pager" }, prev, next),
      ),
      filters,
      h("div", { class: "table-wrap" }, table),
    ),
  );

  // Selection (roving focus over rows) ----------------------------------------------------
  let rows = [];
  let selected = -1;
  const select = (i, focus = true) => {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach((row, k) => {
      const on = k === selected;
      row.tabIndex = on ? 0 : -1;
      if (on) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    });
    if (focus) {
      rows[selected].focus({ preventScroll: true });
      rows[selected].scrollIntoView({ block: "nearest" });
    }
  };
  const open = (caseId) => {
    lastCaseId = caseId;
    navigate(caseHash(caseId));
  };

  const row = (c, i) => {
    const tr = h(
      "tr",
      {
        tabindex: "-1",
        dataset: { caseId: c.case_id },
        onclick: (ev) => {
          if (ev.target.closest("a")) return; // the link navigates by itself
          select(i, false);
          open(c.case_id);
        },
        onfocus: () => select(i, false),
      },
      h("td", { class: "col-score" }, scoreBar(c.score)),
      h(
        "td",
        { class: "col-tx" },
        h(
          "a",
          {
            href: caseHash(c.case_id),
            class: "mono",
            title: `Case ${c.case_id}`,
            tabindex: "-1", // rows are the tab stop; the link is for the mouse
            onclick: () => {
              lastCaseId = c.case_id;
            },
          },
          c.transaction_id,
        ),
      ),
      h("td", { class: "col-amount num" }, formatMoney(c.amount, c.currency)),
      h(
        "td",
        { class: "col-age num" },
        h(
          "time",
          { datetime: c.created_at, title: formatTime(c.created_at) },
          formatAge(c.created_at),
        ),
      ),
      h("td", { class: "col-action" }, chip(c.action ?? "—", `action-${c.action}`)),
      h(
        "td",
        { class: "col-reasons", title: (c.reasons ?? []).join(", ") },
        (c.reasons ?? []).map((r) => chip(r)),
      ),
      ENTITY_COLUMNS.map(([key]) =>
        h("td", { class: "col-entity" }, entityValue(c.entities?.[key])),
      ),
      h("td", { class: "col-status" }, statusChip(c.status)),
      h("td", { class: "col-assignee" }, c.assignee ?? h("span", { class: "muted" }, "—")),
    );
    return tr;
  };

  const load = async () => {
    setStatus("Loading the queue…", "busy");
    table.setAttribute("aria-busy", "true");
    try {
      const data = await api.cases(
        {
          status: state.status,
          reason: state.reason,
          min_score: state.min_score,
          sort: state.sort,
          descending: state.descending,
          limit: PAGE_SIZE,
          offset: state.offset,
        },
        { signal },
      );
      const cases = data.cases ?? [];
      total = data.total ?? cases.length;
      const before = seenReasons.size;
      for (const c of cases) for (const r of c.reasons ?? []) seenReasons.add(r);
      if (seenReasons.size !== before) fillReasons();

      rows = cases.map(row);
      if (rows.length) replace(tbody, rows);
      else placeholder("No cases match these filters.");
      const first = cases.length ? state.offset + 1 : 0;
      count.textContent = `${first}–${state.offset + cases.length} of ${total} cases`;
      prev.disabled = state.offset === 0;
      next.disabled = state.offset + PAGE_SIZE >= total;
      const again = cases.findIndex((c) => c.case_id === lastCaseId);
      // Rows take focus only if nothing else has it (a filter or sort control keeps it).
      const idle = !document.activeElement || document.activeElement === document.body;
      if (rows.length) select(again >= 0 ? again : 0, idle);
      setStatus(`Queue loaded: ${total} cases (${state.status}).`, "ok");
    } catch (err) {
      if (err.name === "AbortError") return;
      placeholder(`Could not load the queue: ${err.message}`, "error");
      count.textContent = "";
      reportError(err);
    } finally {
      table.setAttribute("aria-busy", "false");
    }
  };
  load();

  const move = (d) => () => select(selected < 0 ? 0 : selected + d);
  return {
    keys: {
      j: move(1),
      k: move(-1),
      ArrowDown: move(1),
      ArrowUp: move(-1),
      Enter: () => selected >= 0 && rows.length && open(rows[selected].dataset.caseId),
      n: () => page(1),
      p: () => page(-1),
      "/": () => statusSelect.focus(),
      r: () => navigate("#/rings"),
    },
    hints: [
      ["j k", "move"],
      ["Enter", "open case"],
      ["n p", "next / previous page"],
      ["/", "filters"],
      ["r", "rings"],
    ],
  };
}
