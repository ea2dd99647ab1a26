// Sign in: paste an analyst token; it is kept in sessionStorage (gone when the tab closes)
// and checked against GET /v1/me before going on.

import { clearToken, setToken } from "../api.js";
import { h, replace } from "../dom.js";
import { setStatus } from "../status.js";

export function mount({ main, route, navigate, loadWho, signInMessage }) {
  const next = route.params.get("next");
  const message = h(
    "p",
    { class: "form-message", id: "signin-message", role: "alert" },
    signInMessage ?? "",
  );
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help signin-message",
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");

  const form = h(
    "form",
    { class: "panel signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to review"),
    h("label", { for: "token" }, "Analyst token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "Paste the token your administrator issued (",
      h("code", {}, "riskgraph token new"),
      "). It is kept for this browser tab only.",
    ),
    message,
    h("div", { class: "form-actions" }, submit),
  );

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    submit.disabled = true;
    message.textContent = "";
    setStatus("Checking the token…", "busy");
    setToken(token);
    const me = await loadWho();
    submit.disabled = false;
    if (!me) {
      // A 401 has already sent us back here with the reason; anything else is shown here.
      clearToken();
      message.textContent = "Could not sign in: see the status bar.";
      return;
    }
    setStatus(`Signed in as ${me.user}.`, "ok");
    navigate(next && next.startsWith("#/") && !next.startsWith("#/signin") ? next : "#/queue");
  });

  replace(main, form);
  input.focus();
  return { keys: {}, hints: [["Enter", "sign in"]] };
}
