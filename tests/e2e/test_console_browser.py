"""The console in Chromium (Playwright, headless Debian ``/usr/bin/chromium``), against a fleet
of separate processes: sign in, find a dead letter by filter and re-drive it, answer an order
through the generated form, a bulk re-drive's dry run, inert payloads, CSRF and tenant scopes.

Each test saves a screenshot of the pages it visits into ``$TPF_CONSOLE_SCREENSHOTS`` (the
README's come from ``TPF_CONSOLE_SCREENSHOTS=docs/console``), else into the test's temporary
folder. Without Playwright or Chromium the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.restaurant_approval import AWAIT_STEP, PIPELINE_ID
from tests.e2e.test_approvals_cli import order
from tests.e2e.test_fleet import finished, submit
from tests.substrates import require, unique_stack
from tests.waiting import wait_until
from tpfctl.stack import OwnedStack, StackSpec, owned_stack

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra pins it
    sync_playwright = None

pytestmark = pytest.mark.timeout(300)

CHROMIUM = "/usr/bin/chromium"
GLOBEX_ONLY = "globex-only-token-0123456789"
FIXABLE = "org.tests.fixable"
WAIT_S = 60


@pytest.fixture(scope="module")
def fleet(markers: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedStack]:
    """A coordinator and a worker on the embedded substrate, with a token scoped to globex."""
    spec = StackSpec(
        substrate="embedded",
        stack=unique_stack(),
        profile="test",
        workers=1,
        pipelines=(
            "examples.restaurant_approval:restaurant_approval",
            "tests.e2e.pipelines:fixable",
        ),
        extra_env={
            "TPF_TEST_MARKERS": str(markers),
            "TPF_TENANT_TOKENS": json.dumps({GLOBEX_ONLY: ["globex"]}),
        },
    )
    with owned_stack(spec, workdir=tmp_path_factory.mktemp("console-fleet")) as stack:
        yield stack


@pytest.fixture(scope="module")
def chromium(fleet: OwnedStack) -> Iterator[Browser]:
    """Started after the fleet and stopped before it: Playwright's sync API holds an event loop
    on this thread while it runs, and the fleet's start and stop run their own."""
    if sync_playwright is None:
        require("playwright is not installed (pip install -e '.[dev]')")
    if not shutil.which(CHROMIUM):
        require(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1100, "height": 720})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("TPF_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def acme(fleet: OwnedStack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{fleet.api_url}/tpf/control-plane/tenants/acme",
        headers={"Authorization": f"Bearer {fleet.control_plane_token}"},
        timeout=10,
    ) as client:
        yield client


def sign_in(page: Page, fleet: OwnedStack, path: str, token: str | None = None) -> None:
    """Open ``path``, be sent to sign in, sign in, and land back on ``path``."""
    page.goto(fleet.api_url + path)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Bearer token").fill(token or fleet.admin_token)
    page.get_by_label("Your name").fill("ada")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)


def dead_letter(fleet: OwnedStack, acme: httpx.Client, name: str) -> dict[str, Any]:
    """A fixable execution, run until it is dead-lettered."""
    response = submit(acme, FIXABLE, {"name": name})
    assert response.status_code == 200, response.text
    status = finished(acme, response.json()["executionId"], timeout=WAIT_S)
    assert status["status"] == "DLQ", status
    return status


def fix(markers: Path, name: str) -> None:
    Path(markers, f"fixed.{name}").write_text("deployed")


def reload_until_status(page: Page, status: str) -> None:
    def shows() -> bool:
        page.reload()
        return page.locator("#status").inner_text() == status

    wait_until(shows, timeout=WAIT_S, interval=0.3)


def test_a_dead_letter_found_by_filter_is_redriven_and_succeeds(
    page: Page, fleet: OwnedStack, acme: httpx.Client, markers: Path, shots: Path
) -> None:
    name = f"dl-{uuid.uuid4().hex[:8]}"
    dead = dead_letter(fleet, acme, name)
    fix(markers, name)
    sign_in(page, fleet, f"/console/tenants/acme/executions?status=DLQ&pipelineId={FIXABLE}")
    expect(page.get_by_label("DLQ")).to_be_checked()
    expect(page.get_by_label("Pipeline")).to_have_value(FIXABLE)
    row = page.get_by_role("row").filter(has_text=dead["executionId"])
    expect(row).to_contain_text("DLQ")
    page.screenshot(path=shots / "executions.png")
    row.get_by_role("link").click()
    expect(page.locator("#status")).to_have_text("DLQ")
    page.get_by_label("Reason").first.fill("fix deployed")
    page.get_by_role("button", name="Re-drive").click()
    expect(page.get_by_role("status")).to_contain_text("Re-driven")
    reload_until_status(page, "SUCCEEDED")
    timeline = page.locator("table.timeline")
    expect(timeline).to_contain_text("ada (console)")
    expect(timeline).to_contain_text("fix deployed")
    page.screenshot(path=shots / "execution.png", full_page=True)


def test_an_order_is_approved_through_the_form_built_from_its_schema(
    page: Page, fleet: OwnedStack, acme: httpx.Client, shots: Path
) -> None:
    execution_id = submit(acme, PIPELINE_ID, order("Grace")).json()["executionId"]

    def pending() -> dict[str, Any] | None:
        listed = acme.get("/interactions/pending", params={"stepId": AWAIT_STEP}).json()
        return next((i for i in listed if i["executionId"] == execution_id), None)

    interaction = wait_until(pending, timeout=WAIT_S, interval=0.2)
    sign_in(page, fleet, f"/console/tenants/acme/inbox?pipelineId={PIPELINE_ID}")
    row = page.get_by_role("row").filter(has_text=execution_id)
    page.screenshot(path=shots / "inbox.png")
    row.get_by_role("link", name="Answer").click()
    accepted = page.locator("fieldset.branch[data-branch=accepted]")
    expect(accepted).to_be_hidden()  # only the chosen branch's fields show
    page.get_by_label("accepted", exact=True).check()
    expect(accepted).to_be_visible()
    order_id = interaction["requestPayload"]["orderId"]
    expect(accepted.get_by_label("orderId")).to_have_value(order_id)
    accepted.get_by_label("note").fill("see you at eight")
    page.screenshot(path=shots / "answer.png", full_page=True)
    page.get_by_role("button", name="Send answer").click()
    expect(page.get_by_role("heading", name="Execution")).to_be_visible()
    reload_until_status(page, "SUCCEEDED")
    result = acme.get(f"/executions/{execution_id}/result").json()["resultPayload"]
    decided = json.loads(result["payload"])
    assert (decided["outcome"], decided["orderId"]) == ("APPROVED", order_id)


def test_a_bulk_redrive_counts_in_a_dry_run_before_it_moves_anything(
    page: Page, fleet: OwnedStack, acme: httpx.Client, markers: Path, shots: Path
) -> None:
    names = [f"bulk-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    dead = [dead_letter(fleet, acme, name) for name in names]
    code = dead[0]["errorCode"]
    listed = acme.get("/executions", params={"status": "DLQ", "errorCode": code}).json()
    count = len(listed["executions"])
    assert count >= 2
    sign_in(page, fleet, "/console/tenants/acme/dead-letters")
    group = page.get_by_role("row").filter(has_text=code).filter(has_text="DLQ")
    expect(group).to_contain_text(str(count))
    group.get_by_role("button", name="Re-drive… (dry run first)").click()
    expect(page.get_by_role("status")).to_contain_text(f"Dry run: {count} DLQ")
    expect(page.locator("table.dlq-depths")).to_contain_text("results-dlq")
    page.screenshot(path=shots / "dead_letters.png", full_page=True)
    for execution in dead:  # the dry run moved nothing
        assert acme.get(f"/executions/{execution['executionId']}").json()["status"] == "DLQ"
    for name in names:
        fix(markers, name)
    page.get_by_role("button", name=f"Re-drive {count} now").click()
    expect(page.get_by_role("status")).to_contain_text(f"Re-driven {count} of {count}")
    for execution in dead:
        execution_id = execution["executionId"]
        assert finished(acme, execution_id, timeout=WAIT_S)["status"] == "SUCCEEDED"


def test_a_payload_holding_a_script_renders_as_inert_text(
    page: Page, fleet: OwnedStack, acme: httpx.Client
) -> None:
    name = "<script>window.pwned = true</script><img src=x onerror='window.pwned=true'>"
    dead = dead_letter(fleet, acme, name)
    sign_in(page, fleet, f"/console/tenants/acme/executions/{dead['executionId']}")
    expect(page.locator("pre.payload-text").first).to_contain_text("<script>window.pwned")
    assert page.evaluate("window.pwned === undefined")
    assert page.locator("pre.payload-text script, pre.payload-text img").count() == 0


def test_an_action_without_the_csrf_token_is_refused(
    page: Page, fleet: OwnedStack, acme: httpx.Client
) -> None:
    dead = dead_letter(fleet, acme, f"csrf-{uuid.uuid4().hex[:8]}")
    sign_in(page, fleet, f"/console/tenants/acme/executions/{dead['executionId']}")
    page.locator("form[action$='/redrive'] input[name=csrf]").evaluate("input => input.remove()")
    page.get_by_role("button", name="Re-drive").click()
    expect(page.get_by_role("heading", name="403")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("CSRF")
    assert acme.get(f"/executions/{dead['executionId']}").json()["status"] == "DLQ"


def test_a_token_scoped_to_globex_cannot_open_an_acme_execution(
    page: Page, fleet: OwnedStack, acme: httpx.Client
) -> None:
    dead = dead_letter(fleet, acme, f"scope-{uuid.uuid4().hex[:8]}")
    path = f"/console/tenants/acme/executions/{dead['executionId']}"
    sign_in(page, fleet, path, token=GLOBEX_ONLY)
    expect(page.get_by_role("heading", name="403")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text(dead["executionId"])
    page.goto(fleet.api_url + "/console")
    expect(page.get_by_role("heading", name="Overview")).to_contain_text("globex")


def test_the_releases_page_shows_the_active_release_and_a_healthy_worker(
    page: Page, fleet: OwnedStack, acme: httpx.Client, shots: Path
) -> None:
    dead_letter(fleet, acme, f"rel-{uuid.uuid4().hex[:8]}")  # the page lists pipelines in use
    sign_in(page, fleet, "/console/tenants/acme/releases")
    section = page.locator(f"section[data-pipeline='{FIXABLE}']")
    expect(section.locator(".active-release")).to_have_text(fleet.spec.release)
    expect(section.locator("table.workers")).to_contain_text("HEALTHY")
    expect(section.get_by_role("button", name="Drain")).to_be_visible()
    page.screenshot(path=shots / "releases.png", full_page=True)


def test_the_overview_counts_by_status_and_shows_queue_depths(
    page: Page, fleet: OwnedStack, acme: httpx.Client, shots: Path
) -> None:
    dead_letter(fleet, acme, f"ov-{uuid.uuid4().hex[:8]}")
    sign_in(page, fleet, "/console?tenant=acme")
    expect(page.get_by_role("heading", name="Overview")).to_contain_text("acme")
    dead = page.locator("table.counts a[href$='status=DLQ']")
    expect(dead).not_to_have_text("0")
    expect(page.locator("table.depths")).to_contain_text("results")
    page.screenshot(path=shots / "overview.png", full_page=True)


def test_a_wrong_token_does_not_sign_in(page: Page, fleet: OwnedStack) -> None:
    page.goto(fleet.api_url + "/console")
    page.get_by_label("Bearer token").fill("not-our-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not one of ours")
