"""The console's administration view in a real headless Chromium, on both deployments: an
admin key opens it instead of the files view; projects, service accounts, their keys and the
admin keys made and revoked in it, checked against the Administration API and by using the
keys with the official SDK."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import Locator, Page, expect

from .._server import ServerProcess, openai_files_cli
from .conftest import sign_in

#: What an admin's first view says of the key in use, and the page's title then.
ADMIN_TITLE = "Administration · openai-files console"
#: A name that would read "Support bot exe.txt": the Administration API refuses it, the
#: command line takes it for a key, and the console shows it escaped.
BIDI_NAME = "Support bot \u202etxt.exe"
BIDI_SHOWN = "Support bot \\u202etxt.exe"


@dataclass
class Admin:
    """An admin key of a fresh organization, with an HTTP client of the API as it."""

    key: str
    org: str
    http: httpx.Client

    def get(self, path: str, **params: str) -> dict[str, Any]:
        answer = self.http.get(f"/v1/organization/{path}", params=params)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def projects(self) -> list[dict[str, Any]]:
        return list(self.get("projects", include_archived="true", limit="100")["data"])


@pytest.fixture
def admin(console_server: ServerProcess) -> Iterator[Admin]:
    org = f"org-{uuid.uuid4().hex[:10]}"
    key = console_server.create_admin_key(org)
    with httpx.Client(
        base_url=console_server.root_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        yield Admin(key, org, http)


def sign_in_admin(page: Page, server: ServerProcess, key: str) -> None:
    """Open the console with an admin key, as a person does."""
    page.goto(server.root_url + "/")
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#admin")).to_be_visible()
    expect(page.locator("#projects-status")).not_to_have_text("Loading…")
    expect(page.locator("#admin-keys-body tr").first).to_be_visible()
    expect(page.locator("#audit-page-text")).not_to_be_empty()  # the admin key's making
    expect(page.locator("#banner")).to_be_hidden()  # every call of the view answered


def sdk(server: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=server.base_url, max_retries=0, timeout=30)


def works(server: ServerProcess, key: str) -> bool:
    """Whether `key` lists and uploads files through the official SDK (False: a 401)."""
    client = sdk(server, key)
    try:
        made = client.files.create(file=("probe.jsonl", b'{"a": 1}\n'), purpose="batch")
        assert made.id in [f.id for f in client.files.list()]
    except openai.AuthenticationError:
        return False
    return True


def cli_key(server: ServerProcess, org: str, project: str, name: str) -> str:
    """A key made with `openai-files keys create --name` on the server's stores."""
    done = openai_files_cli(
        "keys", "create", "--data-dir", str(server.data_dir), "--org", org,
        "--project", project, "--name", name, env=server.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def row(page: Page, table: str, object_id: str) -> Locator:
    return page.locator(f"#{table}-body tr[data-id='{object_id}']")


def test_an_admin_makes_a_project_and_a_service_account_whose_key_is_shown_once_and_works(
    page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in_admin(page, console_server, admin.key)
    # The administration view, not the files view: its own title, skip link and heading.
    expect(page).to_have_title(ADMIN_TITLE)
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#tenant")).to_have_text(f"{admin.org} · admin key")
    expect(page.locator("#skip-link")).to_have_attribute("href", "#projects-heading")
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_focused()
    expect(page.locator("#projects-status")).to_have_text("No projects yet: create one above.")

    # A name that would not show as it reads is refused, in the API's words, in the banner.
    page.get_by_label("New project").fill(BIDI_NAME)
    page.get_by_label("New project").press("Enter")
    expect(page.locator("#banner-text")).to_have_text(
        re.compile(r"Invalid 'name': the character '\\u202e' at position 12 is not allowed\. .*")
    )
    assert admin.projects() == []
    # Create a project, from the keyboard.
    page.get_by_label("New project").fill("Support bot")
    page.get_by_label("New project").press("Enter")
    expect(page.locator("#projects-status")).to_contain_text("Created")
    (project,) = admin.projects()
    assert (project["name"], project["status"]) == ("Support bot", "active")
    project_row = row(page, "projects", project["id"])
    expect(project_row.locator(".filename")).to_have_text("Support bot")
    expect(project_row).to_contain_text("active")

    # Open it: no service account, no key yet.
    project_row.get_by_role("button", name=re.compile("^Open ")).click()
    expect(page.locator("#project-heading")).to_have_text("Project Support bot")
    expect(page.locator("#project-heading")).to_be_focused()
    expect(page.locator("#project-id")).to_have_text(project["id"])
    expect(project_row).to_have_attribute("aria-current", "true")
    expect(page.locator("#accounts-status")).to_have_text("No service accounts yet.")
    expect(page.locator("#keys-status")).to_have_text("No active key.")

    # A service account: its key shown once, in a dialog, with Copy and the note.
    page.get_by_label("New service account").fill("nightly-batch")
    page.get_by_role("button", name="Create service account").click()
    dialog = page.locator("#secret-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Copy the new key")
    expect(dialog).to_contain_text("Shown once.")
    expect(dialog).to_contain_text("the only time the key is shown")
    value = dialog.get_by_label("Key").input_value()
    assert value.startswith("sk-svcacct-")
    dialog.get_by_role("button", name="Copy").click()
    expect(page.locator("#secret-copied")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == value
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_be_hidden()
    # Gone from the page once the dialog is closed.
    assert value not in page.content()
    assert page.locator("#secret-value").input_value() == ""
    (account,) = admin.get(f"projects/{project['id']}/service_accounts")["data"]
    assert account["name"] == "nightly-batch"
    expect(row(page, "accounts", account["id"])).to_contain_text("nightly-batch")
    (key,) = admin.get(f"projects/{project['id']}/api_keys")["data"]
    key_row = row(page, "keys", key["id"])
    expect(key_row).to_contain_text(key["redacted_value"])
    expect(key_row).to_contain_text(f"Service account nightly-batch ({account['id']})")
    # A service account's key goes with its account (OpenAI refuses to delete it alone).
    expect(key_row.get_by_role("button", name=re.compile("^Revoke"))).to_have_count(0)
    assert key["redacted_value"][-4:] == value[-4:]

    # The key works with the official SDK, on this project's files.
    assert works(console_server, value)

    # Deleting the service account revokes its key.
    row(page, "accounts", account["id"]).get_by_role("button", name=re.compile("^Delete")).click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm.get_by_role("heading")).to_have_text("Delete the service account nightly-batch?")
    confirm.get_by_role("button", name="Delete service account").click()
    expect(page.locator("#accounts-status")).to_have_text(
        "Deleted the service account nightly-batch; its key is revoked."
    )
    expect(page.locator("#keys-status")).to_have_text("No active key.")
    assert not works(console_server, value)
    assert admin.get(f"projects/{project['id']}/service_accounts")["data"] == []


def test_an_admin_revokes_a_key_renames_and_archives_a_project(
    page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    made = admin.http.post("/v1/organization/projects", json={"name": "Ops"})
    assert made.status_code == 200, made.text
    project = made.json()
    # Revoked by the archive; named on the command line with a bidirectional override.
    kept = cli_key(console_server, admin.org, project["id"], BIDI_NAME)
    revoked = console_server.create_key(admin.org, project["id"])  # revoked from its row
    assert works(console_server, kept) and works(console_server, revoked)
    keys = admin.get(f"projects/{project['id']}/api_keys")["data"]
    assert len(keys) == 2
    by_hint = {k["redacted_value"][-4:]: k for k in keys}
    revoked_id = by_hint[revoked[-4:]]["id"]
    kept_id = by_hint[kept[-4:]]["id"]
    assert by_hint[kept[-4:]]["name"] == BIDI_NAME

    sign_in_admin(page, console_server, admin.key)
    project_row = row(page, "projects", project["id"])
    project_row.get_by_role("button", name="Open Ops: its service accounts and keys").click()
    key_row = row(page, "keys", revoked_id)
    expect(key_row).to_contain_text("A user (made with openai-files keys create)")
    # A name that would not show as it reads is shown escaped.
    expect(row(page, "keys", kept_id).locator(".filename")).to_have_text(BIDI_SHOWN)

    # Revoke: a dialog asks first; Cancel (Escape) leaves the key alone.
    key_row.get_by_role("button", name=re.compile("^Revoke")).click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_be_visible()
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    assert works(console_server, revoked)
    key_row.get_by_role("button", name=re.compile("^Revoke")).click()
    expect(confirm.get_by_role("heading")).to_have_text("Revoke the key Secret key?")
    confirm.get_by_role("button", name="Revoke key").click()
    expect(page.locator("#keys-status")).to_contain_text("Revoked ")
    expect(key_row).to_have_count(0)
    assert not works(console_server, revoked)
    assert works(console_server, kept)

    # Rename, in a dialog.
    project_row.get_by_role("button", name="Rename Ops").click()
    rename = page.locator("#rename-dialog")
    expect(rename.get_by_label("Name")).to_be_focused()
    rename.get_by_label("Name").fill("Operations")
    rename.get_by_role("button", name="Rename").click()
    expect(project_row.locator(".filename")).to_have_text("Operations")
    expect(page.locator("#project-heading")).to_have_text("Project Operations")
    assert admin.get(f"projects/{project['id']}")["name"] == "Operations"

    # Archive, from the keyboard: the dialog says what it does; the project's keys stop.
    project_row.get_by_role("button", name="Archive Operations").focus()
    page.keyboard.press("Enter")
    expect(confirm.get_by_role("heading")).to_have_text("Archive Operations?")
    expect(confirm).to_contain_text("Every API key of")
    page.keyboard.press("Tab")
    expect(confirm.get_by_role("button", name="Archive project")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#projects-status")).to_have_text("Archived Operations.")
    expect(project_row).to_have_count(0)  # archived projects are not listed unless asked
    assert admin.get(f"projects/{project['id']}")["status"] == "archived"
    assert not works(console_server, kept)
    # The open project says so: no service accounts to reach, no active key.
    expect(page.locator("#project-status")).to_have_text("archived")
    expect(page.locator("#project-archived-note")).to_be_visible()
    expect(page.locator("#accounts-part")).to_be_hidden()
    expect(page.locator("#keys-status")).to_have_text(
        "No active key: they were revoked with the project."
    )
    page.get_by_label("Show archived projects").check()
    expect(project_row).to_contain_text("archived")
    expect(project_row.get_by_role("button", name=re.compile("^(Rename|Archive)"))).to_have_count(0)


def test_projects_page_by_twenty_oldest_first(
    page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    made = []
    for i in range(23):
        answer = admin.http.post("/v1/organization/projects", json={"name": f"p{i:02}"})
        assert answer.status_code == 200, answer.text
        made.append(answer.json()["id"])
    assert [p["id"] for p in admin.projects()] == made  # the API's order: oldest first
    sign_in_admin(page, console_server, admin.key)

    def shown() -> list[str]:
        ids: list[str] = page.locator("#projects-body tr").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"
        )
        return ids

    page_text = page.locator("#projects-page-text")
    expect(page_text).to_have_text("Page 1 · projects 1\u201320")
    assert shown() == made[:20]
    expect(page.locator("#projects-prev")).to_be_disabled()
    page.locator("#projects-next").click()
    expect(page_text).to_have_text("Page 2 · projects 21\u201323 of 23")
    assert shown() == made[20:]
    expect(page.locator("#projects-next")).to_be_disabled()
    page.locator("#projects-prev").click()
    expect(page_text).to_have_text("Page 1 · projects 1\u201320")
    assert shown() == made[:20]


def test_the_apis_errors_show_in_the_banner(
    page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    project = admin.http.post("/v1/organization/projects", json={"name": "Soon gone"}).json()
    sign_in_admin(page, console_server, admin.key)
    row(page, "projects", project["id"]).get_by_role("button", name=re.compile("^Open ")).click()
    expect(page.locator("#accounts-status")).to_have_text("No service accounts yet.")
    # Archived elsewhere meanwhile: the API's refusal, in its words.
    assert admin.http.post(f"/v1/organization/projects/{project['id']}/archive").status_code == 200
    page.get_by_label("New service account").fill("late")
    page.get_by_role("button", name="Create service account").click()
    expect(page.locator("#banner-text")).to_have_text(
        f"Project '{project['id']}' is archived. Archived projects cannot be used or updated."
    )
    expect(page.locator("#secret-dialog")).to_be_hidden()
    page.get_by_role("button", name="Dismiss the message").click()
    expect(page.locator("#banner")).to_be_hidden()


def test_admin_keys_are_made_shown_once_and_revoked_and_revoking_ones_own_closes_the_console(
    page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    sign_in_admin(page, console_server, admin.key)
    (own,) = admin.get("admin_api_keys")["data"]
    own_row = row(page, "admin-keys", own["id"])
    expect(own_row).to_contain_text("this console's key")
    expect(own_row).to_contain_text(own["redacted_value"])

    page.get_by_label("New admin key").fill("deploy pipeline")
    page.get_by_role("button", name="Create admin key").click()
    dialog = page.locator("#secret-dialog")
    expect(dialog).to_be_visible()
    value = dialog.get_by_label("Key").input_value()
    assert value.startswith("sk-admin-")
    page.keyboard.press("Escape")  # closes it as Done does
    expect(dialog).to_be_hidden()
    assert value not in page.content()
    new = next(k for k in admin.get("admin_api_keys")["data"] if k["id"] != own["id"])
    assert new["name"] == "deploy pipeline"
    new_row = row(page, "admin-keys", new["id"])
    expect(new_row).not_to_contain_text("this console's key")
    # The new key works on the Administration API; once revoked here, it does not.
    with httpx.Client(
        base_url=console_server.root_url, headers={"Authorization": f"Bearer {value}"}
    ) as other:
        assert other.get("/v1/organization/projects").status_code == 200
        new_row.get_by_role("button", name=re.compile("^Revoke")).click()
        page.locator("#confirm-dialog").get_by_role("button", name="Revoke admin key").click()
        expect(new_row).to_have_count(0)
        assert other.get("/v1/organization/projects").status_code == 401

    # Revoking the key in use: the dialog says so, and the console closes.
    own_row.get_by_role("button", name=re.compile("^Revoke")).click()
    expect(page.locator("#confirm-text")).to_contain_text("the console closes")
    page.locator("#confirm-dialog").get_by_role("button", name="Revoke admin key").click()
    expect(page.locator("#key-error")).to_have_text(
        f"The admin key {own['redacted_value']} was revoked: open the console with another key."
    )
    expect(page.locator("#admin")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.locator("#projects-body tr, #admin-keys-body tr").count() == 0


def test_a_project_key_sees_no_admin_view_and_nothing_of_an_admin_stays_after_one(
    page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    project = admin.http.post("/v1/organization/projects", json={"name": "Files"}).json()
    key = console_server.create_key(admin.org, project["id"])
    sign_in_admin(page, console_server, admin.key)
    expect(row(page, "projects", project["id"])).to_be_visible()
    page.get_by_role("button", name="Forget key").click()

    sign_in(page, console_server, key)
    expect(page).to_have_title("Files · openai-files console")
    expect(page.locator("#admin")).to_be_hidden()
    expect(page.locator("#tenant")).to_have_text(f"{admin.org} · {project['id']}")
    expect(page.locator("#skip-link")).to_have_attribute("href", "#files-heading")
    # Nothing of the admin's is left in the page, shown or not.
    assert page.locator("#admin tbody tr").count() == 0
    expect(page.get_by_role("heading", name="Projects")).to_have_count(0)
    # And the project's key cannot reach the Administration API from the page either.
    status = page.evaluate(
        """async (key) => (await fetch('/v1/organization/projects',
             {headers: {Authorization: 'Bearer ' + key}})).status""",
        key,
    )
    assert status == 403


def test_the_admin_view_at_phone_width(
    phone_page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    page = phone_page
    project = admin.http.post("/v1/organization/projects", json={"name": "Mobile"}).json()
    sign_in_admin(page, console_server, admin.key)
    project_row = row(page, "projects", project["id"])
    expect(project_row).to_be_visible()
    project_row.get_by_role("button", name=re.compile("^Open ")).click()
    expect(page.locator("#project-panel")).to_be_visible()
    expect(page.locator("#keys-status")).to_have_text("No active key.")
    page.get_by_label("New service account").fill("phone-" + "x" * 60)
    page.get_by_role("button", name="Create service account").click()
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#keys-body tr")).to_have_count(1)
    # Rows become cards, and nothing is wider than the screen, long ids neither: no table
    # scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    widest = page.evaluate(
        """() => Math.max(...[...document.querySelectorAll('#admin td, #admin .table-wrap')]
             .filter((e) => e.offsetParent !== null)
             .map((e) => e.getBoundingClientRect().right))"""
    )
    assert widest <= 390
    assert page.evaluate(
        """() => [...document.querySelectorAll('#admin .table-wrap')]
             .every((w) => w.scrollWidth <= w.clientWidth)"""
    )


def shown_events(page: Page) -> list[str]:
    ids: list[str] = page.locator("#audit-body tr").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def test_the_audit_log_shows_the_actions_newest_first_filtered_and_paged(
    page: Page, console_server: ServerProcess, admin: Admin
) -> None:
    sign_in_admin(page, console_server, admin.key)
    (own,) = admin.get("admin_api_keys")["data"]
    # The admin key's own making, on the server's side: no actor, no project.
    expect(page.locator("#audit-body tr")).to_have_count(1)
    (minted,) = page.locator("#audit-body tr").all()
    expect(minted).to_contain_text("api_key.created")
    expect(minted.locator(".audit-actor")).to_have_text("The server (its command line)")
    expect(minted.locator(".audit-target")).to_have_text(own["id"])

    # Actions in the view: each shows in the log at once, newest first.
    page.get_by_label("New project").fill("Audited")
    page.get_by_label("New project").press("Enter")
    expect(page.locator("#projects-status")).to_contain_text("Created")
    (project,) = admin.projects()
    row(page, "projects", project["id"]).get_by_role("button", name=re.compile("^Open ")).click()
    page.get_by_label("New service account").fill("uploader")
    page.get_by_role("button", name="Create service account").click()
    expect(page.locator("#secret-dialog")).to_be_visible()
    value = page.locator("#secret-value").input_value()
    page.get_by_role("button", name="Done").click()
    (account,) = admin.get(f"projects/{project['id']}/service_accounts")["data"]
    # An action outside the view: a file uploaded with the service account's key, its name
    # with a bidirectional override.
    uploaded = sdk(console_server, value).files.create(
        file=(BIDI_NAME + ".jsonl", b'{"a": 1}\n'), purpose="batch"
    )
    page.get_by_role("button", name="Refresh the audit log").click()
    listed = admin.get("audit_logs", limit="20")["data"]
    assert [e["type"] for e in listed] == [
        "file.created",
        "api_key.created",
        "service_account.created",
        "project.created",
        "api_key.created",
    ]
    expect(page.locator("#audit-body tr")).to_have_count(5)
    assert shown_events(page) == [e["id"] for e in listed]

    file_row = row(page, "audit", listed[0]["id"])
    expect(file_row).to_contain_text("file.created")
    expect(file_row.locator(".audit-actor")).to_have_text(
        f"Service account {account['id']}Key {listed[0]['actor']['api_key']['id']}"
    )
    expect(file_row).to_contain_text("Audited")
    expect(file_row.locator(".audit-target")).to_have_text(uploaded.id)
    # The file's name from the event, shown escaped; its size as the tables show it.
    expect(file_row.locator(".audit-details")).to_contain_text(
        f"filename: {BIDI_SHOWN}.jsonl, purpose: batch, bytes: 9 B"
    )
    created = row(page, "audit", listed[3]["id"])
    expect(created.locator(".audit-actor")).to_have_text(f"Key {own['id']}")
    expect(created.locator(".audit-details")).to_have_text("name: Audited, title: Audited")

    # Rename and archive: recorded with what changed, and the archive's revoked key.
    row(page, "projects", project["id"]).get_by_role("button", name="Rename Audited").click()
    page.locator("#rename-dialog").get_by_label("Name").fill("Audited (old)")
    page.locator("#rename-dialog").get_by_role("button", name="Rename").click()
    expect(page.locator("#audit-body tr").first).to_contain_text("project.updated")
    expect(page.locator("#audit-body tr").first.locator(".audit-details")).to_have_text(
        "changed title: Audited (old)"
    )
    row(page, "projects", project["id"]).get_by_role("button", name=re.compile("^Archive")).click()
    page.locator("#confirm-dialog").get_by_role("button", name="Archive project").click()
    expect(page.locator("#projects-status")).to_contain_text("Archived")
    listed = admin.get("audit_logs", limit="20")["data"]
    assert {e["type"] for e in listed[:2]} == {"project.archived", "api_key.deleted"}
    expect(page.locator("#audit-body tr")).to_have_count(len(listed))
    assert shown_events(page) == [e["id"] for e in listed]

    # A filter by type, then by project as well: what the API lists with them.
    page.get_by_label("Event type").select_option("api_key.created")
    typed = admin.get("audit_logs", **{"event_types[]": "api_key.created"})["data"]
    assert len(typed) == 2  # the service account's key, the admin key
    expect(page.locator("#audit-body tr")).to_have_count(2)
    assert shown_events(page) == [e["id"] for e in typed]
    page.get_by_label("Event type").select_option("")
    other = admin.http.post("/v1/organization/projects", json={"name": "Other"}).json()
    page.get_by_role("button", name="Refresh the audit log").click()
    expect(page.locator("#audit-body tr").first).to_contain_text("project.created")
    page.get_by_label("Project", exact=True).select_option(project["id"])
    in_project = admin.get("audit_logs", **{"project_ids[]": project["id"]})["data"]
    expect(page.locator("#audit-body tr")).to_have_count(len(in_project))
    assert shown_events(page) == [e["id"] for e in in_project]
    assert other["id"] not in page.locator("#audit-body").inner_text()
    # The archived project is among the filter's choices, said so.
    expect(page.locator("#audit-project option[value='" + project["id"] + "']")).to_have_text(
        f"Audited (old) ({project['id']}) · archived"
    )
    page.get_by_label("Project", exact=True).select_option("")

    # Paging, 20 a page, newest first, with the API's cursor.
    for i in range(15):
        made = admin.http.post("/v1/organization/projects", json={"name": f"p{i:02}"})
        assert made.status_code == 200, made.text
    page.get_by_role("button", name="Refresh the audit log").click()
    first = admin.get("audit_logs", limit="20")
    expect(page.locator("#audit-page-text")).to_have_text("Page 1 · events 1\u201320")
    assert shown_events(page) == [e["id"] for e in first["data"]]
    page.get_by_role("button", name="Older events").click()
    second = admin.get("audit_logs", limit="20", after=first["last_id"])
    total = 20 + len(second["data"])
    expect(page.locator("#audit-page-text")).to_have_text(
        f"Page 2 · events 21\u2013{total} of {total}"
    )
    assert shown_events(page) == [e["id"] for e in second["data"]]
    expect(page.get_by_role("button", name="Older events")).to_be_disabled()
    page.get_by_role("button", name="Newer events").click()
    expect(page.locator("#audit-page-text")).to_have_text("Page 1 · events 1\u201320")
    assert shown_events(page) == [e["id"] for e in first["data"]]
