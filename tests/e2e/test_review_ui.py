"""The analyst review UI in a real headless Chromium against the real API: sign in, work the
queue with the keyboard, read a case, record a verdict, and find it in the audit log."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from services.audit import verify_audit_log
from tests.e2e.conftest import LiveApi, Ui

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_analyst_reviews_a_case_and_the_verdict_is_audited(live_api: LiveApi, ui: Ui) -> None:
    page = ui.page
    ui.open()
    expect(page.get_by_role("heading", name="Sign in to review")).to_be_visible()
    ui.shot("sign-in")

    ui.sign_in(live_api.token("analyst"))
    expect(page.locator("#who")).to_contain_text("e2e-analyst")
    rows = page.locator(".queue-table tbody tr[data-case-id]")
    expect(rows.first).to_be_visible()
    expect(page.locator(".count")).to_contain_text(f"of {len(live_api.open_cases)} cases")
    # An analyst may not see PII: entities are shown masked, and marked as such.
    expect(rows.first.locator(".masked").first).to_contain_text("•••")
    ui.shot("queue")

    # j moves down, k back up; Enter opens the selected case.
    selected = page.locator(".queue-table tbody tr[aria-current='true']")
    first_id, second_id = (rows.nth(i).get_attribute("data-case-id") for i in (0, 1))
    assert first_id and second_id
    page.keyboard.press("j")
    expect(selected).to_have_attribute("data-case-id", second_id)
    page.keyboard.press("k")
    expect(selected).to_have_attribute("data-case-id", first_id)
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(re.escape(f"#/case/{first_id}") + "$"))
    expect(page.get_by_role("heading", name=f"Case {first_id}")).to_be_visible()
    graph = page.locator("svg.graph")
    expect(graph.locator("g.node-query")).to_have_count(1)
    assert graph.locator("g.node").count() > 3
    assert graph.locator("line.edge").count() > 2
    # Hovering a node names it.
    graph.locator("g.node-query").hover()
    expect(page.locator(".graph-tip")).to_contain_text("transaction · hop 0")
    # The two cases the fixture resolved are this case's precedents, with their outcomes.
    precedents = page.locator("table.precedents tbody tr")
    expect(precedents).to_have_count(len(live_api.resolved))
    for case_id, outcome in live_api.resolved.items():
        row = precedents.filter(has=page.get_by_role("link", name=case_id))
        expect(row.locator(".chip-status-" + outcome)).to_have_text(outcome)
    expect(page.locator(".narrative a.citation").first).to_have_attribute(
        "href", re.compile(r"^#/case/case-")
    )
    ui.shot("case")

    note = "e2e: six accounts on one device in three minutes"
    page.get_by_label("Note").fill(note)
    page.keyboard.press("Escape")  # leaves the note field; shortcuts work again
    expect(page).to_have_url(re.compile(re.escape(f"#/case/{first_id}") + "$"))
    page.keyboard.press("f")
    result = page.locator(".verdict-result")
    expect(result).to_contain_text("Recorded “fraud” · audit seq")
    expect(page.locator(".head-status")).to_contain_text("fraud")
    ui.shot("verdict-recorded")

    seq = int(result.locator(".receipt-seq").inner_text())
    shown_hash = result.locator("code").get_attribute("title")
    record = next(
        r
        for r in live_api.audit_records()
        if r["kind"] == "analyst_action" and r["case_id"] == first_id and r["verdict"]
    )
    assert (record["seq"], record["hash"]) == (seq, shown_hash)
    assert record["action"] == "label"
    assert record["outcome"] == "ok"
    assert record["verdict"] == "fraud"
    assert record["user"] == "e2e-analyst"
    assert record["note_hash"]  # the note is kept as a keyed hash, never in clear
    assert note not in live_api.container.settings.audit_path.read_text()
    assert verify_audit_log(live_api.container.settings.audit_path, check_head=False).ok

    # Back to the queue: the case is no longer open.
    page.keyboard.press("b")
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    expect(page.locator(f".queue-table tr[data-case-id='{first_id}']")).to_have_count(0)
    ui.shot("queue-after-verdict")
    assert ui.errors == []


def test_a_role_without_label_permission_sees_the_policy_refusal(live_api: LiveApi, ui: Ui) -> None:
    page = ui.page
    case_id = live_api.open_cases[0]
    # A deep link to the case: sign-in first, then straight to it.
    ui.open(f"#/case/{case_id}")
    ui.sign_in(live_api.token("auditor", sub="e2e-auditor"))
    expect(page.get_by_role("heading", name=f"Case {case_id}")).to_be_visible()
    expect(page.locator("svg.graph g.node-query")).to_have_count(1)
    ui.shot("case-as-auditor")

    page.get_by_role("button", name="Escalate").click()
    result = page.locator(".verdict-result")
    expect(result).to_contain_text("The review policy refused this verdict: action_not_permitted")
    expect(page.locator("#status")).to_contain_text("action_not_permitted")
    expect(page.locator(".head-status")).to_contain_text("open")
    ui.shot("verdict-refused")

    denied = [
        r
        for r in live_api.audit_records()
        if r["kind"] == "analyst_action" and r["case_id"] == case_id and r["outcome"] == "denied"
    ]
    assert [(r["user"], r["action"], r["reasons"]) for r in denied] == [
        ("e2e-auditor", "label", ["action_not_permitted"])
    ]
    assert ui.errors == []


def test_senior_analyst_labels_a_whole_ring(live_api: LiveApi, ui: Ui) -> None:
    page = ui.page
    ui.open("#/rings")
    ui.sign_in(live_api.token("senior_analyst", sub="e2e-senior"))
    first = page.locator(".rings tbody tr").first
    expect(first).to_have_attribute("aria-current", "true")
    ring_id = first.locator("td").first.inner_text()
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(re.escape(f"#/rings/{ring_id}") + "$"))
    detail = page.locator(".ring-detail")
    expect(detail.get_by_role("heading")).to_contain_text(ring_id)
    # view_pii: the shared entities are shown in clear.
    expect(detail.locator(".chip-shared").first).to_be_visible()
    expect(detail.locator(".masked")).to_have_count(0)
    case_ids = detail.locator("tbody a").all_inner_texts()
    assert len(case_ids) >= 2
    ui.shot("ring")

    detail.get_by_label("Note").fill("e2e: one device, one IP, several accounts")
    detail.get_by_role("button", name="Confirm fraud").click()
    result = detail.locator(".verdict-result")
    expect(result).to_contain_text(f"Recorded “fraud” · {len(case_ids)} cases: audit seq")
    expect(detail.locator("tbody .chip-status-fraud")).to_have_count(len(case_ids))
    ui.shot("ring-labelled")

    seqs = sorted(int(s) for s in result.locator(".receipt-seq").all_inner_texts())
    records = [
        r
        for r in live_api.audit_records()
        if r["kind"] == "analyst_action" and r["action"] == "bulk_label"
    ]
    assert sorted(r["seq"] for r in records) == seqs
    assert sorted(r["case_id"] for r in records) == sorted(case_ids)
    assert {(r["user"], r["verdict"], r["outcome"]) for r in records} == {
        ("e2e-senior", "fraud", "ok")
    }
    assert set(case_ids).isdisjoint(live_api.open_case_ids())
    assert ui.errors == []


def test_pii_reaches_the_browser_masked_for_a_role_without_view_pii(
    live_api: LiveApi, ui: Ui
) -> None:
    page = ui.page
    ui.open()
    ui.sign_in(live_api.token("analyst"))
    expect(page.locator(".queue-table tbody tr[data-case-id]").first).to_be_visible()
    case_id = live_api.open_cases[0]
    # Everything the API sends this browser while it shows a case and the rings.
    with page.expect_response(re.compile(r"/v1/cases/[^/]+$")) as case_response:
        ui.open(f"#/case/{case_id}")
    expect(page.locator("svg.graph g.node-query")).to_have_count(1)
    with page.expect_response(re.compile(r"/v1/rings$")) as rings_response:
        ui.open("#/rings")
    expect(page.locator(".rings tbody tr").first).to_be_visible()

    for where, text in [
        ("GET /v1/cases/{id}", case_response.value.text()),
        ("GET /v1/rings", rings_response.value.text()),
    ]:
        leaked = sorted(v for v in live_api.pii if v in text)
        assert leaked == [], f"{where} sent PII in clear to an analyst: {leaked}"
    assert ui.errors == []


def test_a_bad_token_returns_to_sign_in_with_the_reason(live_api: LiveApi, ui: Ui) -> None:
    page = ui.page
    ui.open("#/rings")
    ui.sign_in(live_api.token("analyst") + "x")  # a tampered signature
    expect(page.locator("#signin-message")).to_contain_text("401")
    expect(page.locator("#signin-message")).to_contain_text("signature does not verify")
    expect(page.get_by_label("Analyst token")).to_be_visible()
    ui.shot("sign-in-refused")
    assert ui.errors == []
