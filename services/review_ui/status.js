// The status bar at the bottom of every screen: the latest message, and the shortcuts of the
// current screen. Errors stay until something else is reported.

import { h, kbd, replace } from "./dom.js";

const statusEl = () => document.getElementById("status");

/** Show `message`; `kind` is one of info, busy, ok, error. */
export function setStatus(message, kind = "info") {
  const el = statusEl();
  el.dataset.kind = kind;
  const stamp = new Date().toTimeString().slice(0, 8);
  replace(
    el,
    h("span", { class: "status-kind" }, { error: "Error", busy: "…" }[kind] ?? "●"),
    h("span", { class: "status-text" }, message),
    h("span", { class: "status-time" }, stamp),
  );
}

export function reportError(err) {
  setStatus(err?.message ?? String(err), "error");
}

/** Show the current screen's shortcuts: a list of [key, description]. */
export function setShortcuts(hints) {
  replace(
    document.getElementById("shortcuts"),
    hints.map(([keys, label]) =>
      h("span", { class: "shortcut" }, keys.split(" ").map(kbd), ` ${label}`),
    ),
  );
}
