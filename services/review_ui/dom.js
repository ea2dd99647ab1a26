// DOM building and formatting helpers shared by the views.
//
// Data from the API is only ever inserted as text (textContent / attributes), never parsed
// as HTML: narratives, notes and ids are untrusted.

/**
 * Create an element. `attrs` keys: `class`, `text`, `on<event>` handlers, `dataset`, boolean
 * attributes (true sets, false/null/undefined omits); anything else becomes an attribute.
 * Children may be nodes, strings, numbers, or (nested) arrays of them; null is skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  return h(`svg:${tag}`, attrs, ...children);
}

/** `2026-03-09 11:02:33` in the browser's time zone; the ISO original goes in a tooltip. */
export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? "—");
  const p = (n) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
  );
}

export function timeEl(iso) {
  return h("time", { datetime: iso, title: iso }, formatTime(iso));
}

/** How long ago `iso` was, coarsely: `45s`, `12m`, `3h 05m`, `2d 04h`. */
export function formatAge(iso, now = Date.now()) {
  const s = Math.max(0, Math.floor((now - new Date(iso).getTime()) / 1000));
  if (!Number.isFinite(s)) return "—";
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const hrs = Math.floor(m / 60);
  if (hrs < 24) return `${hrs}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hrs / 24)}d ${String(hrs % 24).padStart(2, "0")}h`;
}

const moneyFormats = new Map();

/** `€1,234.50`; falls back to `1,234.50 XYZ` for a currency code Intl does not know. */
export function formatMoney(amount, currency) {
  if (typeof amount !== "number") return "—";
  if (!currency) return formatNumber(amount);
  if (!moneyFormats.has(currency)) {
    try {
      moneyFormats.set(
        currency,
        new Intl.NumberFormat(undefined, { style: "currency", currency }),
      );
    } catch {
      moneyFormats.set(currency, null);
    }
  }
  const fmt = moneyFormats.get(currency);
  return fmt ? fmt.format(amount) : `${formatNumber(amount)} ${currency}`;
}

export function formatNumber(x, digits = 2) {
  return typeof x === "number"
    ? x.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "—";
}

/** A score in [0, 1] as a number and a coloured bar; the band names the colour. */
export function scoreBar(score) {
  const s = typeof score === "number" ? Math.min(1, Math.max(0, score)) : null;
  let band = "none";
  if (s !== null) band = s >= 0.9 ? "high" : s >= 0.7 ? "elevated" : s >= 0.5 ? "medium" : "low";
  const fill = h("span", { class: "score-fill" });
  fill.style.width = `${(s ?? 0) * 100}%`;
  return h(
    "span",
    { class: `score score-${band}` },
    h("span", { class: "score-value" }, s === null ? "—" : s.toFixed(2)),
    h("span", { class: "score-track", "aria-hidden": "true" }, fill),
  );
}

/**
 * A driver's contribution (logit units) as a signed number and a bar relative to `max`;
 * positive pushed the score up, negative pulled it down, and the two are coloured apart.
 */
export function contributionBar(value, max) {
  if (typeof value !== "number") return h("span", { class: "muted" }, "—");
  const fill = h("span", { class: "contrib-fill" });
  fill.style.width = `${max > 0 ? Math.min(1, Math.abs(value) / max) * 100 : 0}%`;
  return h(
    "span",
    {
      class: `contrib ${value < 0 ? "contrib-down" : "contrib-up"}`,
      title: value < 0 ? "lowered the score" : "raised the score",
    },
    h("span", { class: "contrib-track", "aria-hidden": "true" }, fill),
    h("span", { class: "contrib-value" }, (value < 0 ? "−" : "+") + Math.abs(value).toFixed(3)),
  );
}

/** A table header row of plain column titles. */
export function headRow(...titles) {
  return h("tr", {}, titles.map((t) => h("th", { scope: "col" }, t)));
}

/** One row spanning `columns` with a message (loading, empty, failed). */
export function messageRow(columns, text, kind = "muted") {
  return h("tr", {}, h("td", { colspan: columns, class: `placeholder ${kind}` }, text));
}

export function chip(text, kind = "reason", title = null) {
  return h("span", { class: `chip chip-${kind}`, title }, text);
}

export function statusChip(status) {
  return chip(status ?? "unknown", `status-${status ?? "unknown"}`);
}

export function labelChip(label) {
  return chip(label ?? "unknown", `label-${label ?? "unknown"}`);
}

// The API masks PII it may not show this analyst (e.g. `acc-***12`).
const MASK = /[*•]/;

/** An entity value; masked ones are marked as such, missing ones shown as a dash. */
export function entityValue(value) {
  if (value === null || value === undefined || value === "") {
    return h("span", { class: "muted", title: "none" }, "—");
  }
  const text = String(value);
  if (MASK.test(text)) {
    return h(
      "span",
      { class: "masked", title: "Masked: your role may not view this PII" },
      h("span", { class: "visually-hidden" }, "masked: "),
      text,
    );
  }
  return h("span", { class: "mono" }, text);
}

export function kbd(key) {
  return h("kbd", {}, key);
}
