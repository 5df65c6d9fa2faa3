"""The web console in a real headless Chromium, on both deployments: what a person does with
it, checked against what the server then holds."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from .._server import Deployment, ServerProcess
from .conftest import UPLOAD_THRESHOLD, MiB, Tenant, open_page, sign_in


def usage_shown(page: Page, expected: int) -> None:
    """The usage panel shows `expected` bytes used (the exact count is in its data)."""
    expect(page.locator("#usage-text")).to_have_attribute("data-bytes", str(expected))


def rows(page: Page) -> list[str]:
    """The ids of the rows shown, in order."""
    ids: list[str] = page.locator("#files-body tr").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def png(width: int, height: int) -> bytes:
    """A small valid PNG (RGB, one colour)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x2a\x7f\xd0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_a_wrong_key_is_refused_with_the_servers_message_and_a_right_one_opens_the_files(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    page.goto(console_server.root_url + "/console")  # redirects to /
    assert page.url == console_server.root_url + "/"
    key_input = page.get_by_label("API key", exact=True)
    expect(key_input).to_be_focused()
    key_input.fill("sk-not-a-key-of-this-server")
    key_input.press("Enter")
    expect(page.locator("#key-error")).to_contain_text("Incorrect API key provided")
    expect(page.locator("#workspace")).to_be_hidden()

    key_input.fill(tenant.key)
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#tenant")).to_have_text(f"{tenant.org} · {tenant.project}")
    expect(page.locator("#files-status")).to_have_text("No files yet: upload some above.")
    usage_shown(page, 0)
    # The key is kept in the tab's session storage only: not in the URL, not in a cookie.
    assert tenant.key not in page.url
    assert page.context.cookies() == []
    assert page.evaluate("Object.values(sessionStorage)") == [tenant.key]
    assert page.evaluate("Object.values(localStorage)") == []
    # A reload keeps it (same tab); forgetting it brings the key form back.
    page.reload()
    expect(page.locator("#tenant")).to_have_text(f"{tenant.org} · {tenant.project}")
    page.get_by_role("button", name="Forget key").click()
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_250_files_page_to_the_last_sort_filter_and_search(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    def seed(i: int) -> None:
        if i < 200:
            tenant.upload(f"notes-{i:03}.txt", f"note {i}\n".encode(), purpose="assistants")
        else:
            tenant.upload(f"batch-{i:03}.jsonl", b'{"n": %d}\n' % i, purpose="batch")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(seed, range(250)))
    newest_first = [str(f["id"]) for f in tenant.files(order="desc")]
    oldest_first = [str(f["id"]) for f in tenant.files(order="asc")]
    assert len(newest_first) == 250

    sign_in(page, console_server, tenant.key)
    page_text = page.locator("#page-text")
    expect(page_text).to_have_text("Page 1 · files 1\u2013100")
    assert rows(page) == newest_first[:100]
    page.get_by_role("button", name="Next").click()
    expect(page_text).to_have_text("Page 2 · files 101\u2013200")
    assert rows(page) == newest_first[100:200]
    page.get_by_role("button", name="Next").click()
    expect(page_text).to_have_text("Page 3 · files 201\u2013250 of 250")
    assert rows(page) == newest_first[200:]
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    page.get_by_role("button", name="Previous").click()
    expect(page_text).to_have_text("Page 2 · files 101\u2013200")
    assert rows(page) == newest_first[100:200]

    # Sort by date the other way: back to the first page, oldest first.
    page.get_by_role("button", name="Created").click()
    expect(page.locator("#created-header")).to_have_attribute("aria-sort", "ascending")
    expect(page_text).to_have_text("Page 1 · files 1\u2013100")
    assert rows(page) == oldest_first[:100]

    # Filter by purpose.
    page.get_by_role("combobox", name="Purpose", exact=True).select_option("batch")
    expect(page_text).to_have_text("Page 1 · files 1\u201350 of 50")
    expect(page.locator("#files-body .tag")).to_have_text(["batch"] * 50)
    page.get_by_role("combobox", name="Purpose", exact=True).select_option("")
    expect(page_text).to_have_text("Page 1 · files 1\u2013100")

    # Search by name: the whole list is looked through, not only the page shown.
    search = page.get_by_label("Search by name or id")
    search.fill("notes-1")
    search.press("Enter")
    status = page.locator("#files-status")
    expect(status).to_have_text("100 files named like “notes-1”, among 250 files.")
    names = page.locator("#files-body .filename").all_inner_texts()
    assert sorted(names) == [f"notes-{i}.txt" for i in range(100, 200)]
    search.fill("BATCH-249")  # names match whatever the case
    search.press("Enter")
    expect(page.locator("#files-body .filename")).to_have_text(["batch-249.jsonl"])
    # By id: asked directly.
    some_id = newest_first[137]
    search.fill(some_id)
    search.press("Enter")
    expect(status).to_have_text(f"1 file with id {some_id}.")
    assert rows(page) == [some_id]
    search.fill("file-" + "0" * 24)
    search.press("Enter")
    expect(status).to_have_text("No such File object: file-" + "0" * 24)
    assert rows(page) == []
    page.get_by_role("button", name="Clear").click()
    expect(page_text).to_have_text("Page 1 · files 1\u2013100")


def test_uploads_small_files_and_an_80_mb_one_in_parallel_parts_with_progress(
    page: Page, console_server: ServerProcess, tenant: Tenant, tmp_path: Path
) -> None:
    small_jsonl = tmp_path / "requests.jsonl"
    small_jsonl.write_bytes(b'{"custom_id": "a", "method": "POST"}\n' * 50)
    bad_jsonl = tmp_path / "broken.jsonl"
    bad_jsonl.write_bytes(b'{"custom_id": "a"}\ncustom_id,b\n')
    small_txt = tmp_path / "notes.txt"
    small_txt.write_bytes("a note, with ünïcode\n".encode() * 100)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(80_000_000))
    assert big.stat().st_size > UPLOAD_THRESHOLD

    sign_in(page, console_server, tenant.key)
    # Every value the progress bars take, and every step shown, as they change.
    page.evaluate(
        """() => {
        window.seen = {progress: {}, steps: []};
        new MutationObserver((records) => {
          for (const r of records) {
            const t = r.target;
            if (t.tagName === "PROGRESS") {
              const name = t.getAttribute("aria-label") || t.id;
              (window.seen.progress[name] ||= []).push([Number(t.value), Number(t.max)]);
            } else if (r.type === "childList" || r.type === "characterData") {
              const step = (t.closest && t.closest(".upload-step")) || t.parentElement;
              if (step && step.classList && step.classList.contains("upload-step")) {
                window.seen.steps.push(step.textContent);
              }
            }
          }
        }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["value"],
                                   childList: true, characterData: true});
      }"""
    )
    page.locator("#upload-purpose").select_option("batch")
    page.locator("#file-input").set_input_files([small_jsonl, bad_jsonl])
    item = page.locator(".upload-item")
    expect(item.filter(has_text="requests.jsonl").locator(".upload-step")).to_contain_text(
        "Uploaded as file-"
    )
    # The refused file shows the server's own message, naming the bad line.
    expect(item.filter(has_text="broken.jsonl").locator(".upload-step")).to_have_text(
        "Expected file to have JSONL format, where every line is a JSON dictionary. "
        'Line 2 is not a dictionary (HINT: line starts with: "cust...").'
    )

    page.locator("#upload-purpose").select_option("evals")
    page.locator("#file-input").set_input_files([small_txt, big])
    big_step = item.filter(has_text="big.bin").locator(".upload-step")
    expect(big_step).to_contain_text("Uploaded as file-", timeout=120_000)
    expect(item.filter(has_text="notes.txt").locator(".upload-step")).to_contain_text(
        "Uploaded as file-"
    )
    overall = page.locator("#overall-bar")
    assert overall.evaluate("b => b.value === b.max")
    expect(page.locator("#overall-text")).to_have_text(
        "2 of 2 files uploaded · 76.3 MiB of 76.3 MiB"
    )

    seen = page.evaluate("window.seen")
    big_progress = seen["progress"]["Progress of big.bin"]
    assert big_progress[-1] == [80_000_000, 80_000_000]
    # Shown on the way, not only at the end: the parts arrive one after the other.
    assert any(0 < value < 80_000_000 for value, _ in big_progress), big_progress
    assert "Creating an upload of 2 parts" in seen["steps"]
    assert "Sent 1 of 2 parts" in seen["steps"]
    assert "Joining 2 parts" in seen["steps"]

    # The server holds the same bytes, the large file made by the Uploads API.
    files = {str(f["filename"]): f for f in tenant.files()}
    assert sorted(files) == ["big.bin", "notes.txt", "requests.jsonl"]
    assert files["requests.jsonl"]["purpose"] == "batch"
    assert files["big.bin"]["purpose"] == "evals"
    for path in (small_jsonl, small_txt, big):
        got = tenant.content(str(files[path.name]["id"]))
        assert hashlib.sha256(got).digest() == hashlib.sha256(path.read_bytes()).digest()
    completed = tenant.http.get("/v1/uploads", params={"status": "completed"}).json()["data"]
    assert [(u["filename"], u["file"]["id"]) for u in completed] == [
        ("big.bin", files["big.bin"]["id"])
    ]
    pending = tenant.http.get("/v1/uploads", params={"status": "all"}).json()["data"]
    assert [u["status"] for u in pending] == ["completed"]

    # Usage counts what is stored; the list shows the new files.
    total = sum(int(str(f["bytes"])) for f in files.values())
    usage_shown(page, total)
    assert tenant.usage() == total
    expect(page.locator("#files-body tr")).to_have_count(3)


def test_a_part_that_fails_is_sent_again_a_refused_one_cancels_and_drops_upload(
    page: Page, console_server: ServerProcess, tenant: Tenant, tmp_path: Path
) -> None:
    flaky = tmp_path / "flaky.bin"
    flaky.write_bytes(os.urandom(UPLOAD_THRESHOLD + 100_000))
    refused = tmp_path / "refused.bin"
    refused.write_bytes(os.urandom(UPLOAD_THRESHOLD + 200_000))
    sign_in(page, console_server, tenant.key)
    page.locator("#upload-purpose").select_option("evals")

    # The first attempt at the part breaks off: the part is sent again, alone.
    attempts: list[str] = []

    def break_the_first(route: Route) -> None:
        attempts.append(route.request.url)
        if len(attempts) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/v1/uploads/*/parts", break_the_first)
    page.locator("#file-input").set_input_files([flaky])
    item = page.locator(".upload-item")
    expect(item.filter(has_text="flaky.bin").locator(".upload-step")).to_contain_text(
        "Uploaded as file-", timeout=60_000
    )
    assert len(attempts) == 2 and attempts[0] == attempts[1]
    (stored,) = tenant.files()
    assert tenant.content(str(stored["id"])) == flaky.read_bytes()
    page.unroute("**/v1/uploads/*/parts")

    # A part refused for good: the server's message, and the upload cancelled at once (its
    # reserved bytes given back).
    def refuse(route: Route) -> None:
        route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps(
                {
                    "error": {
                        "message": "This part is refused, for the test.",
                        "type": "invalid_request_error",
                        "param": "data",
                        "code": None,
                    }
                }
            ),
        )

    page.route("**/v1/uploads/*/parts", refuse)
    page.locator("#file-input").set_input_files([refused])
    expect(item.filter(has_text="refused.bin").locator(".upload-step")).to_have_text(
        "This part is refused, for the test."
    )
    uploads = tenant.http.get("/v1/uploads", params={"status": "all"}).json()["data"]
    assert sorted((u["filename"], u["status"]) for u in uploads) == [
        ("flaky.bin", "completed"),
        ("refused.bin", "cancelled"),
    ]
    usage_shown(page, flaky.stat().st_size)
    page.unroute("**/v1/uploads/*/parts")

    # Stop: the parts in flight end and the upload is cancelled.
    held: list[Route] = []

    def hold(route: Route) -> None:  # the part gets no answer
        held.append(route)

    page.route("**/v1/uploads/*/parts", hold)
    stopped = tmp_path / "stopped.bin"
    stopped.write_bytes(os.urandom(UPLOAD_THRESHOLD + 300_000))
    page.locator("#file-input").set_input_files([stopped])
    for _ in range(400):  # until the part is on its way
        if held:
            break
        page.wait_for_timeout(50)
    assert held
    page.get_by_role("button", name="Stop uploading stopped.bin").click()
    expect(item.filter(has_text="stopped.bin").locator(".upload-step")).to_have_text("Stopped.")
    page.unroute("**/v1/uploads/*/parts")
    uploads = tenant.http.get("/v1/uploads", params={"status": "all"}).json()["data"]
    assert {u["filename"]: u["status"] for u in uploads}["stopped.bin"] == "cancelled"
    usage_shown(page, flaky.stat().st_size)

    # Drag and drop: a file dropped on the upload area is uploaded like a chosen one.
    drop = page.evaluate_handle(
        """() => {
        const data = new DataTransfer();
        data.items.add(new File(['{"dropped": true}\\n'], "dropped.jsonl"));
        return data;
      }"""
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": drop})
    expect(item.filter(has_text="dropped.jsonl").locator(".upload-step")).to_contain_text(
        "Uploaded as file-"
    )
    dropped = next(f for f in tenant.files() if f["filename"] == "dropped.jsonl")
    assert tenant.content(str(dropped["id"])) == b'{"dropped": true}\n'
    assert dropped["purpose"] == "evals"


def test_a_download_is_the_browsers_own_and_the_key_is_not_in_its_url(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    content = b"".join(b'{"custom_id": "r%d", "method": "POST"}\n' % i for i in range(2000))
    tenant.upload("résumé data.jsonl", content, purpose="batch")
    sign_in(page, console_server, tenant.key)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download résumé data.jsonl").click()
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename == "résumé data.jsonl"
    assert "/console/download/" in download.url
    assert tenant.key not in download.url
    assert Path(download.path()).read_bytes() == content


def test_preview_shows_the_first_lines_of_a_jsonl_file_and_a_vision_image(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}) for i in range(30)]
    tenant.upload("train.jsonl", ("\n".join(lines) + "\n").encode(), purpose="fine-tune")
    tenant.upload("chart.png", png(40, 30), purpose="vision")
    sign_in(page, console_server, tenant.key)

    page.get_by_role("button", name="Preview train.jsonl").click()
    dialog = page.locator("#preview-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".preview-lines li")).to_have_text(lines[:20])
    expect(dialog.locator("#preview-note")).to_contain_text("The first 20 lines")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Preview train.jsonl")).to_be_focused()

    page.get_by_role("button", name="Preview chart.png").click()
    image = dialog.get_by_role("img", name="chart.png")
    expect(image).to_be_visible()
    assert image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [
        True,
        40,
        30,
    ]
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_delete_asks_for_confirmation_naming_the_files_and_works_from_the_keyboard(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    a = tenant.upload("alpha.jsonl", b'{"a": 1}\n' * 10)
    b = tenant.upload("beta.jsonl", b'{"b": 2}\n' * 20)
    c = tenant.upload("gamma.jsonl", b'{"c": 3}\n' * 30)
    sign_in(page, console_server, tenant.key)
    usage_shown(page, int(str(a["bytes"])) + int(str(b["bytes"])) + int(str(c["bytes"])))

    page.get_by_label("Select alpha.jsonl").check()
    page.get_by_label("Select gamma.jsonl").check()
    page.get_by_role("button", name="Delete selected (2)").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Delete 2 files?")
    names = dialog.locator("#delete-names strong")
    expect(names).to_have_text(["alpha.jsonl", "gamma.jsonl"], ignore_case=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert len(tenant.files()) == 3

    page.get_by_role("button", name="Delete selected (2)").click()
    dialog.get_by_role("button", name="Delete 2 files").click()
    expect(page.locator("#files-status")).to_have_text("Deleted 2 files.")
    assert [f["id"] for f in tenant.files()] == [b["id"]]
    expect(page.locator("#files-body .filename")).to_have_text(["beta.jsonl"])
    usage_shown(page, int(str(b["bytes"])))

    # The keyboard alone: a row's Delete button, the dialog's buttons.
    page.get_by_role("button", name="Delete beta.jsonl").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#delete-names strong")).to_have_text(["beta.jsonl"])
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Delete", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#files-status")).to_have_text("Deleted 1 file.")
    assert tenant.files() == []
    usage_shown(page, 0)


def test_pending_uploads_show_in_usage_and_can_be_cancelled(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    created = tenant.http.post(
        "/v1/uploads",
        json={
            "filename": "half-sent.jsonl",
            "purpose": "batch",
            "bytes": 123_456,
            "mime_type": "application/jsonl",
        },
    )
    created.raise_for_status()
    upload_id = created.json()["id"]
    sign_in(page, console_server, tenant.key)
    expect(page.locator("#pending-count")).to_have_text("1")
    expect(page.locator("#pending-list li")).to_contain_text(["half-sent.jsonl"])
    usage_shown(page, 123_456)  # its bytes are reserved

    page.get_by_role("button", name="Cancel the upload of half-sent.jsonl").click()
    expect(page.locator("#pending-count")).to_have_text("0")
    expect(page.locator("#pending-list li")).to_have_count(0)
    usage_shown(page, 0)
    status = tenant.http.get("/v1/uploads", params={"status": "all"}).json()["data"]
    assert [(u["id"], u["status"]) for u in status] == [(upload_id, "cancelled")]


def test_another_tenants_key_sees_none_of_it(
    page: Page, console_server: ServerProcess, new_tenant: Callable[[], Tenant]
) -> None:
    owner, other = new_tenant(), new_tenant()
    secret = owner.upload("secret-plans.jsonl", b'{"plan": "x"}\n' * 100)
    # The owner sees it; then, in the same tab, another organization's key does not.
    sign_in(page, console_server, owner.key)
    expect(page.locator("#files-body .filename")).to_have_text(["secret-plans.jsonl"])
    page.get_by_role("button", name="Forget key").click()
    expect(page.locator("#files-body tr")).to_have_count(0)
    page.get_by_label("API key", exact=True).fill(other.key)
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#tenant")).to_have_text(f"{other.org} · {other.project}")
    expect(page.locator("#files-status")).to_have_text("No files yet: upload some above.")
    usage_shown(page, 0)
    search = page.get_by_label("Search by name or id")
    search.fill("secret")
    search.press("Enter")
    expect(page.locator("#files-status")).to_have_text("No file named like “secret” among 0 files.")
    search.fill(str(secret["id"]))
    search.press("Enter")
    expect(page.locator("#files-status")).to_have_text(f"No such File object: {secret['id']}")
    # Nor can its key make a download link for it.
    refused = other.http.post("/console/api/download-links", json={"file_id": secret["id"]})
    assert refused.status_code == 404


def test_at_phone_width_rows_stack_and_nothing_scrolls_sideways(
    phone_page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    tenant.upload("a-rather-long-file-name-for-a-phone-screen.jsonl", b'{"a": 1}\n')
    tenant.upload("short.jsonl", b'{"b": 1}\n')
    page = phone_page
    sign_in(page, console_server, tenant.key)
    expect(page.locator("#files-body tr")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    cell = page.locator("#files-body tr").first.locator("td[data-label='Size']")
    assert cell.evaluate("td => getComputedStyle(td).display") == "flex"
    assert cell.evaluate("td => getComputedStyle(td, '::before').content") == '"Size"'
    row_box = page.locator("#files-body tr").first.bounding_box()
    assert row_box is not None and row_box["width"] <= 390
    download = page.get_by_role("button", name="Download short.jsonl")
    download.scroll_into_view_if_needed()
    box = download.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.get_by_role("button", name="Delete short.jsonl").click()
    expect(page.locator("#delete-dialog")).to_be_visible()
    box = page.locator("#delete-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.keyboard.press("Escape")


def test_a_key_that_no_longer_works_brings_back_the_key_form_with_the_servers_message(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    sign_in(page, console_server, tenant.key)
    page.evaluate(
        "k => sessionStorage.setItem('openai-files.console.key', k)", "sk-no-longer-valid"
    )
    page.reload()
    expect(page.locator("#key-error")).to_contain_text("Incorrect API key provided")
    assert re.search(r"sk-no-", page.locator("#key-error").inner_text())
    assert page.evaluate("sessionStorage.length") == 0


def test_no_download_or_preview_is_offered_for_a_file_the_server_will_not_serve(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    served = tenant.upload("requests.jsonl", b'{"a": 1}\n', purpose="batch")
    refused = [
        tenant.upload("manual.txt", b"for an assistant\n", purpose="assistants"),
        tenant.upload("profile.txt", b"a user's data\n", purpose="user_data"),
    ]
    sign_in(page, console_server, tenant.key)
    expect(page.locator("#files-body tr")).to_have_count(3)
    for file in refused:
        # The server refuses their content (OpenAI does too): the console offers none.
        answer = tenant.http.get(f"/v1/files/{file['id']}/content")
        assert answer.status_code == 400, answer.text
        row = page.locator(f"#files-body tr[data-id='{file['id']}']")
        expect(row.get_by_role("button", name="Download")).to_have_count(0)
        expect(row.get_by_role("button", name="Preview")).to_have_count(0)
        expect(row.locator(".no-download")).to_have_text("Not downloadable")
        expect(row.get_by_role("button", name=f"Delete {file['filename']}")).to_be_visible()
    row = page.locator(f"#files-body tr[data-id='{served['id']}']")
    expect(row.get_by_role("button", name="Download requests.jsonl")).to_be_visible()
    expect(row.get_by_role("button", name="Preview requests.jsonl")).to_be_visible()
    expect(row.locator(".no-download")).to_have_count(0)


def in_viewport(page: Page, selector: str) -> None:
    """The element is shown whole within the viewport."""
    box = page.locator(selector).bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], (box, viewport)
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (box, viewport)


def test_an_error_shows_in_view_when_the_page_is_scrolled_down(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    for i in range(40):
        tenant.upload(f"r-{i:02}.jsonl", b'{"a": 1}\n')
    sign_in(page, console_server, tenant.key)
    expect(page.locator("#files-body tr")).to_have_count(40)
    expect(page.locator("#batches-status")).to_have_text("No batches yet.")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    # The file of the table's last row, the one in view down there. Not the first uploaded:
    # files of the same second are listed by id, so that one may be anywhere in its second's
    # rows, and clicking its button far up the page would scroll the page up to it.
    last = page.locator("#files-body tr").last
    file_id = last.get_attribute("data-id")
    name = last.locator(".filename").text_content()
    assert file_id is not None and name is not None
    in_viewport(page, f'#files-body tr[data-id="{file_id}"] button[aria-label="Download {name}"]')
    # Deleted elsewhere since the list was shown: its download is refused (404).
    tenant.http.delete(f"/v1/files/{file_id}").raise_for_status()
    page.get_by_role("button", name=f"Download {name}").click()
    expect(page.locator("#banner-text")).to_have_text(f"No such File object: {file_id}")
    assert page.evaluate("window.scrollY") > 600  # still down the page, where it happened
    in_viewport(page, "#banner")
    page.get_by_role("button", name="Dismiss the message").click()
    expect(page.locator("#banner")).to_be_hidden()


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_the_upload_lists_last_line_is_shown_whole(
    browser: Browser,
    console_server: ServerProcess,
    tenant: Tenant,
    tmp_path: Path,
    width: int,
    height: int,
) -> None:
    good = tmp_path / "requests.jsonl"
    good.write_bytes(b'{"a": 1}\n')
    bad = tmp_path / "broken.jsonl"
    bad.write_bytes(b'{"a": 1}\n"custom"\n')
    page, problems = open_page(browser, width, height)
    try:
        sign_in(page, console_server, tenant.key)
        page.locator("#upload-purpose").select_option("batch")
        page.locator("#file-input").set_input_files([good, bad])
        items = page.locator("#upload-list .upload-item")
        expect(items.locator(".upload-step")).to_have_count(2)
        expect(items.filter(has_text="broken.jsonl")).to_have_class(re.compile(r"\bfailed\b"))
        expect(items.filter(has_text="requests.jsonl")).to_have_class(re.compile(r"\bok\b"))
        # The last item's message, its last line included, lies inside the list's box.
        page.locator("#upload-list").scroll_into_view_if_needed()
        listed = page.locator("#upload-list").bounding_box()
        last = items.last.locator(".upload-step").bounding_box()
        assert listed is not None and last is not None
        assert listed["y"] <= last["y"], (listed, last)
        assert last["y"] + last["height"] <= listed["y"] + listed["height"] + 0.5, (listed, last)
        in_viewport(page, "#upload-list")
    finally:
        page.context.close()
    assert problems.messages == []


def test_a_name_with_a_bidi_override_shows_it_escaped(
    page: Page, console_server: ServerProcess, tenant: Tenant
) -> None:
    """`evil\\u202etxt.exe` would read `evilexe.txt`: the list, the delete dialog and the
    preview show such characters (bidi controls, other invisible ones) as escapes, and the
    name stays as sent."""
    name = "evil\u202etxt.exe"
    hidden = "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b"
    escaped = "\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c\\u200b"
    evil = tenant.upload(name, b'{"a": 1}\n', purpose="evals")
    tenant.upload(f"hidden{hidden}.jsonl", b'{"b": 2}\n', purpose="evals")
    sign_in(page, console_server, tenant.key)
    names = page.locator("#files-body .filename")
    expect(names).to_have_count(2)
    expect(names.filter(has_text="evil")).to_have_text("evil\\u202etxt.exe")
    expect(names.filter(has_text="evil")).to_have_attribute("title", "evil\\u202etxt.exe")
    expect(names.filter(has_text="hidden")).to_have_text(f"hidden{escaped}.jsonl")
    page.get_by_role("button", name="Delete evil\\u202etxt.exe").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog.locator("#delete-names strong")).to_have_text(["evil\\u202etxt.exe"])
    dialog.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Preview evil\\u202etxt.exe").click()
    expect(page.locator("#preview-title")).to_have_text("evil\\u202etxt.exe")
    assert [f["filename"] for f in tenant.files() if f["id"] == evil["id"]] == [name]


def test_the_console_takes_part_size_and_uploads_at_once_from_the_servers_config(
    page: Page, deployment: Deployment, tmp_path: Path
) -> None:
    """The console reads its limits from `GET /console/api/config`: on a server whose parts
    may be 80 MiB, a 70 MB file is one part (not two of 64 MiB); on one that lets a key
    stream one upload at a time, the console sends one file at a time."""
    server = deployment.server(
        "--console-upload-threshold-bytes",
        str(UPLOAD_THRESHOLD),
        "--max-part-bytes",
        str(80 * MiB),
        "--max-uploads-per-key",
        "1",
    )
    try:
        key = server.create_key("org-limits", "proj_limits")
        sign_in(page, server, key)
        page.locator("#upload-purpose").select_option("evals")
        item = page.locator(".upload-item")

        # The upload is created for one part (the answer refused, so no 70 MB go).
        created: list[Route] = []
        page.route("**/v1/uploads", lambda route: created.append(route))
        large = tmp_path / "large.bin"
        with large.open("wb") as out:
            out.truncate(70_000_000)
        page.locator("#file-input").set_input_files([large])
        large_step = item.filter(has_text="large.bin").locator(".upload-step")
        expect(large_step).to_have_text("Creating an upload of 1 part")
        for _ in range(400):  # until the request is held
            if created:
                break
            page.wait_for_timeout(50)
        (create,) = created
        assert json.loads(create.request.post_data or "")["bytes"] == 70_000_000
        create.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps(
                {
                    "error": {
                        "message": "Not this time, for the test.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                }
            ),
        )
        expect(large_step).to_have_text("Not this time, for the test.")
        page.unroute("**/v1/uploads")

        # Two files of one part each: the second starts once the first is done.
        held: list[Route] = []
        page.route("**/v1/uploads/*/parts", lambda route: held.append(route))
        contents = {name: os.urandom(UPLOAD_THRESHOLD + 1000) for name in ("one.bin", "two.bin")}
        for name, content in contents.items():
            (tmp_path / name).write_bytes(content)
        page.locator("#file-input").set_input_files([tmp_path / name for name in contents])
        for expected in (1, 2):
            for _ in range(400):
                if len(held) == expected:
                    break
                page.wait_for_timeout(50)
            page.wait_for_timeout(1000)  # time for another part to start, if it were to
            assert len(held) == expected
            held[-1].continue_()
        for name in contents:
            step = item.filter(has_text=name).locator(".upload-step")
            expect(step).to_contain_text("Uploaded as file-", timeout=60_000)
        with httpx.Client(
            base_url=server.root_url, headers={"Authorization": f"Bearer {key}"}
        ) as http:
            files = http.get("/v1/files").json()["data"]
            assert sorted(f["filename"] for f in files) == sorted(contents)
            for file in files:
                got = http.get(f"/v1/files/{file['id']}/content").content
                assert got == contents[file["filename"]]
    finally:
        server.stop()
