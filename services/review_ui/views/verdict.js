// The action bar: a note and three verdict buttons, for one case or a whole ring.
// The result line shows the audit receipt, or why the verdict was refused.

import { h, kbd, replace } from "../dom.js";
import { reportError, setStatus } from "../status.js";

const VERDICTS = [
  ["fraud", "Confirm fraud", "f"],
  ["legit", "Legitimate", "l"],
  ["escalate", "Escalate", "e"],
];

// What the review policy's deny reasons (policies/riskgraph/review) mean to an analyst.
const POLICY_REASONS = {
  action_not_permitted: "your role does not permit this action",
  not_assignee: "the case is assigned to another analyst",
  tenant_mismatch: "the case belongs to another tenant",
  unknown_action: "the action is unknown to the policy",
  invalid_input: "the request was incomplete",
};

function explainReasons(reasons) {
  return reasons.map((r) => (POLICY_REASONS[r] ? `${r} (${POLICY_REASONS[r]})` : r)).join("; ");
}

/** A short, copyable form of an audit receipt {seq, hash}. */
export function receiptEl(receipt) {
  const hash = String(receipt?.hash ?? "");
  return h(
    "span",
    { class: "receipt" },
    "audit seq ",
    h("strong", { class: "mono receipt-seq" }, receipt?.seq ?? "?"),
    hash ? [" · hash ", h("code", { title: hash }, `${hash.slice(0, 12)}…`)] : null,
  );
}

/**
 * `submit(verdict, note)` calls the API; `onDone(result, verdict)` updates the page and
 * returns what the result line shows. `shortcuts` says whether f/l/e are bound (the page
 * binds them; the bar only shows them). Returns {element, enable, submit, focusNote}.
 */
export function verdictBar({ idPrefix, what, submit, onDone, shortcuts = true }) {
  const noteId = `${idPrefix}-note`;
  const note = h("textarea", {
    id: noteId,
    name: "note",
    rows: "2",
    maxlength: "2000",
    placeholder: "Why? (kept in the audit log with the verdict)",
    "aria-describedby": `${idPrefix}-note-help`,
  });
  const result = h("output", { class: "verdict-result", for: noteId, "aria-live": "polite" });
  let enabled = false;
  let busy = false;

  const buttons = VERDICTS.map(([verdict, label, key]) =>
    h(
      "button",
      {
        type: "button",
        class: `btn btn-verdict btn-${verdict}`,
        id: `${idPrefix}-verdict-${verdict}`,
        disabled: true,
        "aria-keyshortcuts": shortcuts ? key : null,
        onclick: () => run(verdict),
      },
      label,
      shortcuts ? [" ", kbd(key)] : null,
    ),
  );
  const setDisabled = (off) => {
    for (const b of buttons) b.disabled = off;
  };

  async function run(verdict) {
    if (!enabled || busy) return;
    busy = true;
    setDisabled(true);
    result.dataset.kind = "busy";
    replace(result, `Submitting “${verdict}” for ${what}…`);
    try {
      const res = await submit(verdict, note.value.trim());
      result.dataset.kind = "ok";
      replace(result, `Recorded “${verdict}” · `, onDone(res, verdict));
      note.value = "";
    } catch (err) {
      result.dataset.kind = "error";
      const reasons = err.policyReasons;
      if (reasons) {
        const text = `The review policy refused this verdict: ${explainReasons(reasons)}.`;
        replace(result, text);
        setStatus(text, "error");
      } else {
        replace(result, `Not recorded: ${err.message}`);
        reportError(err);
      }
    } finally {
      busy = false;
      setDisabled(false);
    }
  }

  const element = h(
    "form",
    {
      class: "action-bar",
      "aria-label": `Verdict for ${what}`,
      onsubmit: (ev) => ev.preventDefault(),
    },
    h(
      "div",
      { class: "field note-field" },
      h(
        "div",
        { class: "note-head" },
        h("label", { for: noteId }, "Note"),
        h(
          "span",
          { id: `${idPrefix}-note-help`, class: "help" },
          shortcuts ? "Esc leaves the note, then press a verdict key." : `Applies to ${what}.`,
        ),
      ),
      note,
    ),
    h("div", { class: "verdict-buttons", role: "group", "aria-label": "Verdict" }, buttons),
    result,
  );

  return {
    element,
    enable() {
      enabled = true;
      setDisabled(false);
    },
    submit: run,
    focusNote: () => note.focus(),
  };
}
