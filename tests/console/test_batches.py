"""The console's batches view in a real headless Chromium, on both deployments, against a
server that runs batches on the fake engine: what a person sees of a batch as it runs, its
files downloaded, and a cancel, checked against what the API says."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from openai_files.testing.engine import FakeEngine

from .._server import Deployment, ServerProcess
from .conftest import Tenant, open_page, sign_in


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine().start() as started:
        yield started


@pytest.fixture(scope="module")
def batch_server(deployment: Deployment, engine: FakeEngine) -> Iterator[ServerProcess]:
    """A server that runs batches on the fake engine, one request of a batch at a time (so
    that a batch of slow requests takes a while, and its progress moves)."""
    proc = deployment.server(
        "--batch-upstream-url", engine.url, "--batch-concurrency-per-batch", "1"
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def batch_tenant(batch_server: ServerProcess) -> Iterator[Tenant]:
    suffix = uuid.uuid4().hex[:10]
    org, project = f"org-{suffix}", f"proj_{suffix}"
    key = batch_server.create_key(org, project)
    with httpx.Client(
        base_url=batch_server.root_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        yield Tenant(key, org, project, http)


def request_line(custom_id: str, fault: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": custom_id}]}
    if fault is not None:
        body["fault"] = fault
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(line).encode() + b"\n"


def create_batch(tenant: Tenant, lines: list[bytes], **extra: Any) -> dict[str, Any]:
    file = tenant.upload("requests.jsonl", b"".join(lines), purpose="batch")
    answer = tenant.http.post(
        "/v1/batches",
        json={
            "input_file_id": file["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            **extra,
        },
    )
    assert answer.status_code == 200, answer.text
    batch: dict[str, Any] = answer.json()
    return batch


def get_batch(tenant: Tenant, batch_id: str) -> dict[str, Any]:
    batch: dict[str, Any] = tenant.http.get(f"/v1/batches/{batch_id}").json()
    return batch


def wait_for(
    tenant: Tenant, batch_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch = get_batch(tenant, batch_id)
        if until(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)


def batch_row(page: Page, batch_id: str) -> Any:
    return page.locator(f"#batches-body tr[data-id='{batch_id}']")


def test_a_batch_shows_its_progress_until_completed_and_its_files_download(
    page: Page, batch_server: ServerProcess, batch_tenant: Tenant
) -> None:
    tenant = batch_tenant
    slow = {"latency": 0.8}
    lines = [request_line(f"ok-{i}", slow) for i in range(4)]
    lines.append(request_line("refused", {"status": 400, "message": "Refused, for the test."}))
    sign_in(page, batch_server, tenant.key)
    expect(page.locator("#batches-status")).to_have_text("No batches yet.")
    expect(page.locator("#batches-no-engine")).to_be_hidden()
    # Every value the batch's bar takes, and every status it shows, as they change.
    page.evaluate(
        """() => {
        window.seen = {progress: [], statuses: []};
        new MutationObserver(() => {
          for (const bar of document.querySelectorAll("#batches-body progress")) {
            window.seen.progress.push([bar.getAttribute("value"), bar.getAttribute("max")]);
          }
          for (const tag of document.querySelectorAll("#batches-body .batch-status")) {
            window.seen.statuses.push(tag.textContent);
          }
        }).observe(document.getElementById("batches-body"), {subtree: true, childList: true});
      }"""
    )
    batch = create_batch(tenant, lines, metadata={"description": "nightly\u202eevals"})
    page.get_by_role("button", name="Refresh the batches").click()
    row = batch_row(page, batch["id"])
    expect(row).to_be_visible()
    # Its description shows with the bidi override escaped (the API keeps it as sent).
    expect(row.locator(".filename")).to_have_text("nightly\\u202eevals")
    # No click after this one: the view asks again by itself while the batch runs.
    expect(row.locator(".batch-status")).to_have_text("completed", timeout=60_000)
    final = get_batch(tenant, batch["id"])
    assert final["status"] == "completed"
    assert final["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
    expect(row.locator(".batch-counts")).to_have_text("4 completed · 1 failed · 5 total")
    bar = row.get_by_role("progressbar", name=f"Progress of {batch['id']}")
    assert bar.evaluate("b => [b.value, b.max]") == [5, 5]
    expect(row.locator("td[data-label='Ended']")).to_contain_text("completed")
    expect(row.get_by_role("button", name=f"Cancel {batch['id']}")).to_have_count(0)
    seen = page.evaluate("window.seen")
    # Seen on the way, not only at the end.
    assert "in_progress" in seen["statuses"], seen
    assert any(value not in (None, "0", "5") for value, _ in seen["progress"]), seen
    # The polling stops once nothing runs.
    expect(page.locator("#batches-status")).to_have_text("")
    assert page.evaluate("() => document.querySelectorAll('#batches-body tr').length") == 1

    # Its files download through the browser's own download, byte for byte as the API has
    # them; the output files show in the files table too.
    for label, field in (("output", "output_file_id"), ("error", "error_file_id")):
        with page.expect_download() as info:
            row.get_by_role("button", name=f"Download the {label} file of {batch['id']}").click()
        download = info.value
        assert download.failure() is None
        assert "/console/download/" in download.url and tenant.key not in download.url
        expected = tenant.content(final[field])
        assert Path(download.path()).read_bytes() == expected
    output = [json.loads(line) for line in tenant.content(final["output_file_id"]).splitlines()]
    assert sorted(line["custom_id"] for line in output) == [f"ok-{i}" for i in range(4)]
    with page.expect_download() as info:
        row.get_by_role("button", name=f"Download the input file of {batch['id']}").click()
    assert Path(info.value.path()).read_bytes() == b"".join(lines)
    assert info.value.suggested_filename == "requests.jsonl"
    expect(page.locator(f"#files-body tr[data-id='{final['output_file_id']}']")).to_be_visible()


def test_a_slow_batch_is_cancelled_after_a_confirmation_and_a_finished_one_says_why_not(
    page: Page, batch_server: ServerProcess, batch_tenant: Tenant
) -> None:
    tenant = batch_tenant
    slow = create_batch(tenant, [request_line(f"r{i}", {"latency": 1}) for i in range(30)])
    sign_in(page, batch_server, tenant.key)
    row = batch_row(page, slow["id"])
    expect(row.locator(".batch-status")).to_have_text("in_progress", timeout=30_000)
    cancel = row.get_by_role("button", name=f"Cancel {slow['id']}")

    # The dialog asks first: Keep it running (or Escape) leaves it alone.
    cancel.click()
    dialog = page.locator("#cancel-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#cancel-intro")).to_contain_text(slow["id"])
    expect(dialog.get_by_role("button", name="Keep it running")).to_be_focused()
    dialog.get_by_role("button", name="Keep it running").click()
    expect(dialog).to_be_hidden()
    assert get_batch(tenant, slow["id"])["status"] == "in_progress"

    # From the keyboard: the row's Cancel, then the dialog's.
    cancel.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Cancel the batch")).to_be_focused()
    page.keyboard.press("Enter")
    expect(row.locator(".batch-status")).to_have_text("cancelled", timeout=30_000)
    final = get_batch(tenant, slow["id"])
    assert final["status"] == "cancelled"
    counts = final["request_counts"]
    assert counts["completed"] < 30  # its later requests were never sent
    expect(row.locator(".batch-counts")).to_have_text(
        f"{counts['completed']} completed · {counts['failed']} failed · {counts['total']} total"
    )
    expect(row.get_by_role("button", name=f"Cancel {slow['id']}")).to_have_count(0)
    expect(page.locator("#banner")).to_be_hidden()

    # A batch that ends while the cancel is on its way: the server's refusal, named.
    quick = create_batch(tenant, [request_line("q", {"latency": 2})])
    page.get_by_role("button", name="Refresh the batches").click()
    row = batch_row(page, quick["id"])
    held: list[Route] = []
    page.route("**/v1/batches/*/cancel", lambda route: held.append(route))
    row.get_by_role("button", name=f"Cancel {quick['id']}").click()
    dialog.get_by_role("button", name="Cancel the batch").click()
    for _ in range(400):
        if held:
            break
        page.wait_for_timeout(50)
    wait_for(tenant, quick["id"], lambda b: b["status"] == "completed")
    held[0].continue_()
    expect(page.locator("#banner-text")).to_have_text(
        f"Could not cancel {quick['id']}: Cannot cancel a batch with status 'completed'."
    )
    expect(row.locator(".batch-status")).to_have_text("completed")
    expect(page.locator("#batches-heading")).to_be_focused()
    page.unroute("**/v1/batches/*/cancel")


def test_batches_page_newest_first_with_the_after_cursor(
    page: Page, batch_server: ServerProcess, batch_tenant: Tenant
) -> None:
    tenant = batch_tenant
    ids = [create_batch(tenant, [request_line("x")])["id"] for _ in range(21)]
    listed = tenant.http.get("/v1/batches", params={"limit": 100}).json()["data"]
    newest_first = [b["id"] for b in listed]
    assert sorted(newest_first) == sorted(ids)
    sign_in(page, batch_server, tenant.key)
    body = page.locator("#batches-body tr")
    page_text = page.locator("#batches-page-text")
    expect(page_text).to_have_text("Page 1 · batches 1\u201320")
    assert body.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first[:20]
    page.get_by_role("button", name="Older batches").click()
    expect(page_text).to_have_text("Page 2 · batches 21\u201321 of 21")
    assert body.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first[20:]
    expect(page.get_by_role("button", name="Older batches")).to_be_disabled()
    page.get_by_role("button", name="Newer batches").click()
    expect(page_text).to_have_text("Page 1 · batches 1\u201320")


def test_polling_stops_while_the_tab_is_hidden(
    page: Page, batch_server: ServerProcess, batch_tenant: Tenant
) -> None:
    tenant = batch_tenant
    slow = create_batch(tenant, [request_line(f"r{i}", {"latency": 1}) for i in range(20)])
    sign_in(page, batch_server, tenant.key)
    expect(batch_row(page, slow["id"]).locator(".batch-status")).to_have_text("in_progress")
    lists: list[str] = []
    page.on("request", lambda r: lists.append(r.url) if "/v1/batches?" in r.url else None)
    page.wait_for_timeout(4500)
    assert len(lists) >= 2  # about every 2 s while it runs and the tab is shown
    # The tab hidden: no request at all; shown again: at once.
    page.evaluate(
        """() => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
        document.dispatchEvent(new Event("visibilitychange"));
      }"""
    )
    lists.clear()
    page.wait_for_timeout(4500)
    assert lists == []
    page.evaluate(
        """() => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => false});
        document.dispatchEvent(new Event("visibilitychange"));
      }"""
    )
    page.wait_for_timeout(500)
    assert len(lists) == 1
    tenant.http.post(f"/v1/batches/{slow['id']}/cancel").raise_for_status()


def test_at_phone_width_a_batch_is_a_card_and_nothing_scrolls_sideways(
    browser: Browser, batch_server: ServerProcess, batch_tenant: Tenant
) -> None:
    tenant = batch_tenant
    done = create_batch(tenant, [request_line("a"), request_line("b")])
    wait_for(tenant, done["id"], lambda b: b["status"] == "completed")
    page, problems = open_page(browser, 390, 844)
    try:
        sign_in(page, batch_server, tenant.key)
        row = batch_row(page, done["id"])
        expect(row.locator(".batch-status")).to_have_text("completed")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        cell = row.locator("td[data-label='Progress']")
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == '"Progress"'
        output = row.get_by_role("button", name=f"Download the output file of {done['id']}")
        output.scroll_into_view_if_needed()
        box = output.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    finally:
        page.context.close()
    assert problems.messages == []
