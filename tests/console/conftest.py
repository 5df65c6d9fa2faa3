"""The web console's tests drive Debian's Chromium through Playwright (its own browser download
is not used): one browser for the session, a fresh context (cookies, storage) per test, and
one server per deployment with a low Uploads API threshold."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from .._server import Deployment, ServerProcess

MiB = 1024 * 1024
#: Files over this go through the Uploads API from the console in these tests.
UPLOAD_THRESHOLD = 4 * MiB

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's chromium, or the binary OPENAI_FILES_CHROMIUM names."""
    return os.environ.get("OPENAI_FILES_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module's tests. Not for the session: Playwright's sync API keeps
    its event loop marked as running in this thread, which other tests' `asyncio.run` and
    anyio runners refuse, so it must end before they run."""
    path = chromium_path()
    if not path:
        reason = (
            "chromium is not installed: the console's browser tests need it "
            "(apt-get install chromium, or set OPENAI_FILES_CHROMIUM to a Chromium binary)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def console_server(deployment: Deployment) -> Iterator[ServerProcess]:
    """A server of the deployment under test with its console on (it listens on loopback)."""
    proc = deployment.server("--console-upload-threshold-bytes", str(UPLOAD_THRESHOLD))
    try:
        yield proc
    finally:
        proc.stop()


@dataclass
class Tenant:
    """A key of a fresh organization and project, with an HTTP client of the API as it."""

    key: str
    org: str
    project: str
    http: httpx.Client

    def upload(self, name: str, content: bytes, purpose: str = "batch") -> dict[str, object]:
        answer = self.http.post(
            "/v1/files", data={"purpose": purpose}, files={"file": (name, content)}
        )
        answer.raise_for_status()
        file: dict[str, object] = answer.json()
        return file

    def files(self, **query: str | int) -> list[dict[str, object]]:
        answer = self.http.get("/v1/files", params={"limit": 10000, **query})
        answer.raise_for_status()
        data: list[dict[str, object]] = answer.json()["data"]
        return data

    def content(self, file_id: str) -> bytes:
        answer = self.http.get(f"/v1/files/{file_id}/content")
        answer.raise_for_status()
        return answer.content

    def usage(self) -> int:
        answer = self.http.get("/console/api/usage")
        answer.raise_for_status()
        used: int = answer.json()["bytes_used"]
        return used


@pytest.fixture
def new_tenant(console_server: ServerProcess) -> Iterator[Callable[[], Tenant]]:
    clients: list[httpx.Client] = []

    def make() -> Tenant:
        suffix = uuid.uuid4().hex[:10]
        org, project = f"org-{suffix}", f"proj_{suffix}"
        key = console_server.create_key(org, project)
        http = httpx.Client(
            base_url=console_server.root_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        clients.append(http)
        return Tenant(key, org, project, http)

    yield make
    for http in clients:
        http.close()


@pytest.fixture
def tenant(new_tenant: Callable[[], Tenant]) -> Tenant:
    return new_tenant()


@dataclass
class PageProblems:
    """What the page reported that a working console never does: script errors, requests
    refused by the Content-Security-Policy."""

    messages: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        # A refused request (401, 404) is logged by the browser itself: the tests check the
        # console shows the API's message for it.
        if message.type == "error" and not text.startswith("Failed to load resource"):
            self.messages.append(text)


def open_page(browser: Browser, width: int = 1280, height: int = 800) -> tuple[Page, PageProblems]:
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems = PageProblems()
    page.on("console", problems.console)
    page.on("pageerror", lambda error: problems.messages.append(f"page error: {error}"))
    return page, problems


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own (no storage shared with other tests), that fails the
    test if a script error or a CSP refusal happened on it."""
    page, problems = open_page(browser)
    try:
        yield page
    finally:
        page.context.close()
    assert problems.messages == []


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    page, problems = open_page(browser, 390, 844)
    try:
        yield page
    finally:
        page.context.close()
    assert problems.messages == []


def sign_in(page: Page, server: ServerProcess, key: str) -> None:
    """Open the console and enter `key`, as a person does."""
    page.goto(server.root_url + "/")
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#files-status")).not_to_have_text("Loading…")
