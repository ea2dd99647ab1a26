// Entry point: hash router, keyboard shortcuts, who is signed in.
//
// Routes: #/signin · #/queue?<filters> · #/case/<case id> · #/rings · #/rings/<ring id>
//
// A view module exports `mount(ctx)` and returns `{keys, hints}`: `keys` maps a key (as in
// KeyboardEvent.key) to a handler, `hints` lists [keys, description] for the status bar.
// `ctx.signal` aborts when the user navigates away, so late answers never paint a screen
// that is no longer shown.

import { api, clearToken, getToken, setUnauthorizedHandler } from "./api.js";
import { h, replace } from "./dom.js";
import { reportError, setShortcuts, setStatus } from "./status.js";
import * as caseView from "./views/case.js";
import * as queueView from "./views/queue.js";
import * as ringsView from "./views/rings.js";
import * as signinView from "./views/signin.js";

const VIEWS = { signin: signinView, queue: queueView, case: caseView, rings: ringsView };
const main = document.getElementById("main");

let current = { keys: {} };
let currentName = null;
let controller = null;
let signInMessage = null;

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, "") || "queue";
  const [path, qs = ""] = raw.split("?", 2);
  const [name, ...rest] = path.split("/");
  return {
    name: name in VIEWS ? name : "queue",
    arg: rest.length ? decodeURIComponent(rest.join("/")) : null,
    params: new URLSearchParams(qs),
  };
}

function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** Back to sign-in with `message` shown there, remembering where the user was going. */
function toSignIn(message) {
  clearToken();
  signInMessage = message;
  const here = location.hash;
  showWho(null);
  if (!here.startsWith("#/signin")) {
    navigate(`#/signin?next=${encodeURIComponent(here || "#/queue")}`);
  } else render();
}

setUnauthorizedHandler((err) => {
  setStatus(err.message, "error");
  toSignIn(`The API refused your token: ${err.message}`);
});

function showWho(me) {
  const who = document.getElementById("who");
  document.getElementById("sign-out").hidden = !me;
  if (!me) {
    replace(who);
    return;
  }
  // /v1/me answers {user, tenant, roles, kind}.
  const roles = Array.isArray(me.roles) ? me.roles.join(", ") : "";
  replace(
    who,
    h("span", { class: "who-id", title: "Signed in as" }, me.user),
    me.tenant ? h("span", { class: "who-meta" }, `tenant ${me.tenant}`) : null,
    roles ? h("span", { class: "who-meta" }, roles) : null,
  );
}

/** Ask the API who the token belongs to; a 401 goes back to sign-in (see the handler). */
async function loadWho() {
  try {
    const me = await api.me();
    showWho(me);
    return me;
  } catch (err) {
    if (err.status !== 401) reportError(err);
    return null;
  }
}

function render() {
  controller?.abort();
  controller = new AbortController();
  const route = parseRoute();
  if (route.name !== "signin" && !getToken()) {
    toSignIn(null);
    return;
  }
  for (const link of document.querySelectorAll("[data-section]")) {
    const here = link.dataset.section === (route.name === "case" ? "queue" : route.name);
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const ctx = { main, route, signal: controller.signal, navigate, loadWho, signInMessage };
  signInMessage = null;
  // Re-rendering the same screen (new filters, say) keeps focus on the control that was used.
  const refocus = route.name === currentName ? document.activeElement?.id : null;
  currentName = route.name;
  try {
    current = VIEWS[route.name].mount(ctx) ?? { keys: {} };
    if (refocus) document.getElementById(refocus)?.focus();
  } catch (err) {
    // A bug in a view must not leave a blank page.
    current = { keys: {} };
    replace(main, h("div", { class: "panel panel-error" }, `This screen failed: ${err.message}`));
    reportError(err);
  }
  setShortcuts(current.hints ?? []);
}

// Shortcuts never fire while typing in a field; Esc leaves the field instead.
document.addEventListener("keydown", (ev) => {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
  const target = ev.target instanceof Element ? ev.target : null;
  if (target?.closest("input, textarea, select, [contenteditable]")) {
    if (ev.key === "Escape") {
      target.blur();
      ev.preventDefault();
    }
    return;
  }
  // Enter and Space keep their native meaning on buttons, links and summaries.
  if ((ev.key === "Enter" || ev.key === " ") && target?.closest("button, a, summary")) return;
  const handler = current.keys?.[ev.key];
  if (handler) {
    ev.preventDefault();
    handler(ev);
  }
});

document.getElementById("sign-out").addEventListener("click", () => {
  toSignIn("Signed out.");
  setStatus("Signed out.");
});

window.addEventListener("hashchange", render);
window.addEventListener("error", (ev) => reportError(ev.error ?? ev.message));
window.addEventListener("unhandledrejection", (ev) => {
  if (ev.reason?.name !== "AbortError") reportError(ev.reason);
});

if (getToken()) loadWho();
render();
