"""End-to-end fixtures: the real API on a loopback port, over a container whose case store
holds cases flagged by really scoring payments, and a real headless Chromium driven by
Playwright.

Chromium is Debian's (``/usr/bin/chromium``); Playwright's own browser downloads are never
used. Screenshots of every step land in ``runs/e2e/<test>/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from playwright.sync_api import Browser, Page, sync_playwright

from gnn.artifact import ModelBundle
from services.api.app import create_app
from services.api.runner import ApiThread
from services.auth import issue_token
from services.cases.model import case_id_for
from services.container import Container, build_container
from services.settings import Settings
from tests.services.api_harness import bundle  # noqa: F401 - the shared small model fixture

# One intra-op thread: the API and the browser share a 2-core machine.
torch.set_num_threads(1)

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (containers), no GPU, and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "runs" / "e2e"
TENANT = "default"  # the development client's tenant, so the seeded cases are in it


@dataclass
class LiveApi:
    """The running API, the container behind it, and the cases the seeding opened."""

    url: str
    container: Container
    flagged: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)
    pii: set[str] = field(default_factory=set)  # the seeded payments' ids the policy masks

    @property
    def open_cases(self) -> list[str]:
        """The flagged cases the fixture left open."""
        return [c for c in self.flagged if c not in self.resolved]

    def token(self, *roles: str, sub: str = "e2e-analyst") -> str:
        """An analyst token for this deployment, as ``riskgraph token new`` would print."""
        return issue_token(
            self.container.settings.token_secret, sub, TENANT, list(roles), ttl_s=3600
        )

    def open_case_ids(self) -> list[str]:
        """The cases open now, from ``GET /v1/cases`` as a senior analyst."""
        r = httpx.get(
            f"{self.url}/v1/cases",
            params={"status": "open"},
            headers={"Authorization": f"Bearer {self.token('senior_analyst', sub='e2e-senior')}"},
            timeout=30.0,
        )
        assert r.is_success, f"GET /v1/cases: {r.status_code} {r.text}"
        return [c["case_id"] for c in r.json()["cases"]]

    def audit_records(self) -> list[dict[str, Any]]:
        """Every record of the audit log file, in order (records are in the OS on append)."""
        lines = self.container.settings.audit_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line]


def _payment(tx: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "event_time": at.isoformat(),
        "account_id": f"acc-{tx}",
        "card_id": f"card-{tx}",
        "merchant_id": "m-e2e-grocer",
        "amount": 42.0,
        "device_id": f"dev-{tx}",
        "ip": "198.51.100.10",
        **fields,
    }


def _seed_payments(start: datetime) -> list[dict[str, Any]]:
    """Payments that the decision policy flags whatever the (untrained) model scores, with
    shared entities so the subgraphs have two hops and the flagged ones form a ring."""

    def t(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    history = [
        _payment(f"e2e-hist-{i}", t(i), account_id=f"acc-farm-{i}", card_id=f"card-farm-{i}")
        for i in range(6)
    ]
    # Six accounts on one device within five minutes: the device-farm rule sends the later
    # ones to review, and the shared device ties them into a ring.
    farm = [
        _payment(
            f"e2e-farm-{i}",
            t(30 + 0.5 * i),
            account_id=f"acc-farm-{i}",
            card_id=f"card-farm-{i}",
            device_id="dev-farm-1",
            ip="203.0.113.7",
            amount=180.0 + 10 * i,
        )
        for i in range(6)
    ]
    declined = _payment("e2e-big", t(40), amount=15_000.0)  # over the EUR limit
    unknown_currency = _payment("e2e-chf", t(41), currency="CHF", amount=90.0)
    return [*history, *farm, declined, unknown_currency]


def _seed(url: str, api_key: str, live: LiveApi) -> None:
    """Score the payments through ``POST /v1/score``, then resolve two of the flagged cases
    through the API so that later cases have precedents."""
    with httpx.Client(base_url=url, timeout=30.0) as http:
        for body in _seed_payments(datetime.now(UTC) - timedelta(hours=2)):
            live.pii |= {body[k] for k in ("account_id", "card_id", "device_id", "ip")}
            r = http.post("/v1/score", json=body, headers={"Authorization": f"Bearer {api_key}"})
            assert r.is_success, f"scoring {body['transaction_id']}: {r.status_code} {r.text}"
            if r.json()["action"] != "approve":
                live.flagged.append(case_id_for(body["transaction_id"]))
        assert len(live.flagged) >= 5, f"the seed payments flagged only {live.flagged}"
        senior = {"Authorization": f"Bearer {live.token('senior_analyst', sub='e2e-senior')}"}
        for case_id, verdict in zip(live.flagged[:2], ("fraud", "legit"), strict=True):
            r = http.post(
                f"/v1/cases/{case_id}/verdict",
                json={"verdict": verdict, "note": "seeded by the e2e fixture"},
                headers=senior,
            )
            assert r.is_success, f"resolving {case_id}: {r.status_code} {r.text}"
            live.resolved[case_id] = verdict


@pytest.fixture
def live_api(tmp_path: Path, bundle: ModelBundle) -> Iterator[LiveApi]:  # noqa: F811
    """The real app (file audit log, SQLite case store, in-process Wasm policy) on a free
    loopback port, with flagged cases in its queue. One per test (a few seconds), so no
    test sees another's verdicts."""
    settings = Settings(
        audit_path=tmp_path / "audit.log",
        dead_letter_path=tmp_path / "dead-letters.jsonl",
        case_db_path=tmp_path / "cases.sqlite",
        device="cpu",
        # A cold first request on a busy machine may take a while; no test here is about
        # the degradation ladder.
        default_deadline_ms=5_000.0,
        max_deadline_ms=5_000.0,
    )
    assert settings.dev_api_key is not None
    container = build_container(settings, bundle=bundle)
    try:
        with ApiThread(create_app(container)) as url:
            live = LiveApi(url, container)
            _seed(url, settings.dev_api_key, live)
            yield live
    finally:
        container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium package"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Ui:
    """One browser tab on the review UI, with numbered screenshots and the page's errors."""

    def __init__(self, page: Page, base_url: str, shots: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.shots = shots
        self.errors: list[str] = []
        self._n = 0
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def open(self, hash_: str = "") -> None:
        self.page.goto(f"{self.base_url}/review/{hash_}")

    def shot(self, name: str) -> Path:
        self._n += 1
        path = self.shots / f"{self._n:02d}-{name}.png"
        self.page.screenshot(path=path)
        return path

    def sign_in(self, token: str) -> None:
        self.page.get_by_label("Analyst token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the ``ui`` fixture knows the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def ui(browser: Browser, live_api: LiveApi, request: pytest.FixtureRequest) -> Iterator[Ui]:
    shots = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, locale="en-GB", timezone_id="UTC"
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    session = Ui(page, live_api.url, shots)
    try:
        yield session
        call = getattr(request.node, "report_call", None)
        if call is not None and call.failed:
            session.shot("failed")
    finally:
        context.close()
