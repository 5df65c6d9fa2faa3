"""Regenerate docs/console-desktop.png, docs/console-phone.png, docs/console-admin.png and
docs/console-audit.png (`make screenshots`).

Starts a server on a temporary folder, gives it a few realistic files, a pending upload and a
finished one, and photographs the console's main screen in Debian's Chromium at desktop
(1280x800) and phone (390x844) width; then gives the organization a few projects, service
accounts and keys, and photographs the administration view at desktop width with a project
open (1280 wide, down to the admin keys), then its audit log of that project.

    python -m tests.console.screenshots [--out docs]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from .._server import ServerProcess
from .conftest import CHROMIUM_ARGS, chromium_path
from .test_console import png

GiB = 1024**3


def jsonl(lines: int, make: object) -> bytes:
    assert callable(make)
    return b"".join(json.dumps(make(i)).encode() + b"\n" for i in range(lines))


def seed(http: httpx.Client) -> None:
    rng = random.Random(12)
    topics = ["billing", "shipping", "returns", "login", "warranty", "invoice"]
    files: list[tuple[str, str, bytes]] = [
        (
            "eval-questions-v3.jsonl",
            "evals",
            jsonl(800, lambda i: {"item": {"question": f"Q{i}", "answer": str(i % 7)}}),
        ),
        ("storefront-hero.png", "vision", png(320, 200)),
        (
            "support-chats-nov.jsonl",
            "fine-tune",
            jsonl(
                9000,
                lambda i: {
                    "messages": [
                        {"role": "user", "content": f"Question about {rng.choice(topics)} #{i}"},
                        {"role": "assistant", "content": "Here is what to do next. " * 3},
                    ]
                },
            ),
        ),
        ("product-manual-2026.pdf", "assistants", b"%PDF-1.7\n" + bytes(rng.randbytes(1_900_000))),
        (
            "ticket-summaries.jsonl",
            "batch",
            jsonl(
                4000,
                lambda i: {
                    "custom_id": f"ticket-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": "…"}],
                    },
                },
            ),
        ),
        ("customer-export.csv", "user_data", b"id,name,plan\n" + b"1042,Ada,pro\n" * 30_000),
        ("style-guide.md", "assistants", b"# Style guide\n\nWrite plainly.\n" * 400),
    ]
    for name, purpose, content in files:
        http.post(
            "/v1/files", data={"purpose": purpose}, files={"file": (name, content)}
        ).raise_for_status()
    http.post(
        "/v1/uploads",
        json={
            "filename": "call-recordings-q4.jsonl",
            "purpose": "batch",
            "bytes": 150_000_000,
            "mime_type": "application/jsonl",
        },
    ).raise_for_status()


def shoot(page: Page, root_url: str, key: str, upload: Path, out: Path) -> None:
    page.goto(root_url + "/")
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#files-body tr")).to_have_count(7)
    page.locator("#upload-purpose").select_option("batch")
    page.locator("#file-input").set_input_files([upload])
    expect(page.locator(".upload-item .upload-step")).to_contain_text("Uploaded as file-")
    expect(page.locator("#files-body tr")).to_have_count(8)
    page.locator("#files-body tr").nth(2).locator("input[type=checkbox]").check()
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    if page.viewport_size and page.viewport_size["width"] < 600:
        # At phone width the panels stack: show the file list, its rows stacked too.
        page.evaluate("window.scrollTo(0, document.querySelector('.files-panel').offsetTop - 12)")
    page.mouse.move(0, 0)  # no row shown as hovered
    page.screenshot(path=str(out))


def seed_admin(http: httpx.Client, server: ServerProcess, org: str) -> str:
    """Projects, service accounts and keys of `org`; the id of the project to open."""
    projects: dict[str, str] = {}
    for name in ("Support bot", "Evals", "Data pipeline", "Website search"):
        answer = http.post("/v1/organization/projects", json={"name": name})
        answer.raise_for_status()
        projects[name] = answer.json()["id"]
    support = projects["Support bot"]
    keys = []
    for name in ("nightly-batch", "ci"):
        answer = http.post(
            f"/v1/organization/projects/{support}/service_accounts", json={"name": name}
        )
        answer.raise_for_status()
        keys.append(answer.json()["api_key"]["value"])
    server.create_key(org, support)
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {keys[0]}"}, timeout=60
    ) as batch:
        lines = jsonl(300, lambda i: {"custom_id": f"t{i}", "method": "POST"})
        made = batch.post(
            "/files", data={"purpose": "batch"}, files={"file": ("tickets-dec.jsonl", lines)}
        )
        made.raise_for_status()
        batch.delete(f"/files/{made.json()['id']}").raise_for_status()
    http.post(
        f"/v1/organization/projects/{projects['Evals']}", json={"name": "Evals (nightly)"}
    ).raise_for_status()
    http.post(f"/v1/organization/projects/{projects['Data pipeline']}/archive").raise_for_status()
    answer = http.post("/v1/organization/admin_api_keys", json={"name": "deploy pipeline"})
    answer.raise_for_status()
    return support


def shoot_admin(page: Page, root_url: str, key: str, project_id: str, out: Path) -> Path:
    page.goto(root_url + "/")
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Open", exact=True).click()
    page.get_by_label("Show archived projects").check()
    row = page.locator(f"#projects-body tr[data-id='{project_id}']")
    row.get_by_role("button", name="Open Support bot: its service accounts and keys").click()
    expect(page.locator("#keys-body tr")).to_have_count(3)
    expect(page.locator("#admin-keys-body tr")).to_have_count(2)
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    keys = page.locator("#admin-keys-panel").bounding_box()
    assert keys is not None
    height = keys["y"] + keys["height"] + 16
    page.screenshot(
        path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": height}
    )
    # The audit log of the project open: what was done in it, newest first.
    page.locator("#audit-project").select_option(project_id)
    expect(page.locator("#audit-page-text")).to_contain_text("of")
    audit = out.with_name("console-audit.png")
    page.locator("#audit-panel").screenshot(path=str(audit))
    return audit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    chromium = chromium_path()
    if not chromium:
        print("chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp:
        server = ServerProcess(
            Path(tmp) / "data", "--org-quota-bytes", str(2 * GiB), env={"TZ": "UTC"}
        ).start()
        try:
            key = server.create_key("org-acme", "proj_support")
            with httpx.Client(
                base_url=server.root_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as http:
                seed(http)
            upload = Path(tmp) / "weekly-digest.jsonl"
            upload.write_bytes(jsonl(1200, lambda i: {"custom_id": f"d{i}", "method": "POST"}))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                try:
                    for name, width, height in (("desktop", 1280, 800), ("phone", 390, 844)):
                        context = browser.new_context(
                            viewport={"width": width, "height": height},
                            device_scale_factor=1,
                            timezone_id="UTC",
                            locale="en-US",
                        )
                        out = args.out / f"console-{name}.png"
                        shoot(context.new_page(), server.root_url, key, upload, out)
                        context.close()
                        # The next run starts from the same files.
                        with httpx.Client(
                            base_url=server.root_url,
                            headers={"Authorization": f"Bearer {key}"},
                        ) as http:
                            for f in http.get("/v1/files").json()["data"]:
                                if f["filename"] == upload.name:
                                    http.delete(f"/v1/files/{f['id']}").raise_for_status()
                        print(f"wrote {out}")
                    admin_key = server.create_admin_key("org-acme")
                    with httpx.Client(
                        base_url=server.root_url,
                        headers={"Authorization": f"Bearer {admin_key}"},
                        timeout=60,
                    ) as http:
                        project_id = seed_admin(http, server, "org-acme")
                    context = browser.new_context(
                        viewport={"width": 1280, "height": 800},
                        device_scale_factor=1,
                        timezone_id="UTC",
                        locale="en-US",
                    )
                    out = args.out / "console-admin.png"
                    audit = shoot_admin(
                        context.new_page(), server.root_url, admin_key, project_id, out
                    )
                    context.close()
                    print(f"wrote {out}\nwrote {audit}")
                finally:
                    browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
