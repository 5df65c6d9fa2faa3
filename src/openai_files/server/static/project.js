/* The project opened in the administration view: its service accounts (create one, whose
   new key is shown once; delete one, which revokes its key) and its active API keys
   (revoke a key made on the command line; a service account's key goes with its account,
   as on OpenAI). An archived project has no service account to reach and no active key. */

import { confirmAction, showSecret } from "./ask.js";
import { auditChanged } from "./audit.js";
import { config } from "./config.js";
import { $, el } from "./dom.js";
import { formatTime, formatTimeFull, shownName } from "./format.js";
import { PagedList } from "./pages.js";
import { api, handleError } from "./session.js";

const state = {
  project: null, // the project shown, or null
  accounts: null, // its service accounts (a PagedList)
  keys: null, // its keys (a PagedList)
};

/** A project's name as shown: its hidden characters escaped. */
export function projectName(project) {
  return shownName(project.name);
}

/** The project open, or null. */
export function openedProject() {
  return state.project;
}

function button(text, label, onClick, className = "button small") {
  const node = el("button", { type: "button", className, textContent: text, ariaLabel: label });
  node.addEventListener("click", () => onClick(node));
  return node;
}

function markCurrentRow() {
  for (const row of $("projects-body").children) {
    const current = state.project !== null && row.dataset.id === state.project.id;
    row.classList.toggle("current", current);
    if (current) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
}

function showHeader() {
  const project = state.project;
  const archived = project.status === "archived";
  $("project-heading").textContent = `Project ${projectName(project)}`;
  $("project-id").textContent = project.id;
  $("project-status").textContent = project.status;
  $("project-status").className = `tag status-${project.status}`;
  $("project-archived-note").hidden = !archived;
  $("accounts-part").hidden = archived;
}

/** Show `project`'s service accounts and keys, below the projects. */
export async function openProject(project) {
  state.project = project;
  $("project-panel").hidden = false;
  showHeader();
  markCurrentRow();
  $("project-heading").focus();
  state.accounts.clear();
  state.keys.clear();
  const archived = project.status === "archived";
  await Promise.all([archived ? null : state.accounts.load(0), state.keys.load(0)]);
}

/** The project changed (renamed, archived): show it so if it is the one open. */
export function projectChanged(project) {
  if (!state.project || state.project.id !== project.id) {
    markCurrentRow();
    return;
  }
  const wasArchived = state.project.status === "archived";
  state.project = project;
  showHeader();
  markCurrentRow();
  if (project.status === "archived" && !wasArchived) {
    state.accounts.clear();
    state.keys.load(0); // its keys were revoked with it
  }
}

export function closeProject() {
  state.project = null;
  $("project-panel").hidden = true;
  if (state.accounts) state.accounts.clear();
  if (state.keys) state.keys.clear();
  $("account-name").value = "";
  markCurrentRow();
}

/** Create a service account named `name` and show its key, once. */
async function createAccount(name) {
  const project = state.project;
  let account;
  try {
    account = await api().createServiceAccount(project.id, name);
  } catch (err) {
    handleError(err);
    return;
  }
  $("account-name").value = "";
  await Promise.all([state.accounts.reload(), state.keys.reload()]);
  state.accounts.setStatus(`Created the service account ${shownName(account.name)} (${account.id}).`);
  auditChanged();
  if (account.api_key) {
    await showSecret({
      intro:
        `The API key of the service account ${shownName(account.name)} of ${projectName(project)}: ` +
        "it reaches this project's files, uploads and batches, as any key of the project.",
      value: account.api_key.value,
      fallback: "accounts-heading",
    });
  }
}

async function deleteAccount(account) {
  const name = shownName(account.name);
  const yes = await confirmAction({
    title: `Delete the service account ${name}?`,
    text: `Its API key is revoked at once: every request made with it is refused from now on. ${account.id} cannot be restored.`,
    confirm: "Delete service account",
    fallback: "accounts-heading",
  });
  if (!yes) return;
  try {
    await api().deleteServiceAccount(state.project.id, account.id);
  } catch (err) {
    handleError(err);
    return;
  }
  await Promise.all([state.accounts.reload(), state.keys.reload()]);
  state.accounts.setStatus(`Deleted the service account ${name}; its key is revoked.`);
  auditChanged();
}

async function revokeKey(key) {
  const name = shownName(key.name);
  const yes = await confirmAction({
    title: `Revoke the key ${name}?`,
    text: `${key.redacted_value} (${key.id}) stops working at once: every request made with it is refused from now on. This cannot be undone.`,
    confirm: "Revoke key",
    fallback: "keys-heading",
  });
  if (!yes) return;
  try {
    await api().deleteProjectKey(state.project.id, key.id);
  } catch (err) {
    handleError(err);
    return;
  }
  await state.keys.reload();
  state.keys.setStatus(`Revoked ${key.redacted_value} (${name}).`);
  auditChanged();
}

function accountRow(account) {
  const name = shownName(account.name);
  return el("tr", { dataset: { id: account.id } },
    el("td", { className: "name", dataset: { label: "Name" } }, el("span", { className: "filename", textContent: name, title: name })),
    el("td", { className: "id", dataset: { label: "ID" } }, el("code", { textContent: account.id })),
    el("td", { dataset: { label: "Role" } }, el("span", { className: "tag", textContent: account.role })),
    el("td", { dataset: { label: "Created" }, textContent: formatTime(account.created_at), title: formatTimeFull(account.created_at) }),
    el("td", { className: "col-actions" },
      el("div", { className: "actions" }, button("Delete", `Delete the service account ${name}`, () => deleteAccount(account), "button small danger-text")),
    ),
  );
}

function ownerOf(key) {
  const account = key.owner && key.owner.service_account;
  if (key.owner && key.owner.type === "service_account" && account) {
    return `Service account ${shownName(account.name)} (${account.id})`;
  }
  return "A user (made with openai-files keys create)";
}

function keyRow(key) {
  const name = shownName(key.name);
  const byAccount = key.owner && key.owner.type === "service_account";
  const actions = el("div", { className: "actions" },
    byAccount
      ? el("span", { className: "muted no-download", textContent: "Goes with its service account", title: "A service account's key is revoked by deleting the service account (as on OpenAI)." })
      : button("Revoke", `Revoke the key ${name} (${key.redacted_value})`, () => revokeKey(key), "button small danger-text"),
  );
  return el("tr", { dataset: { id: key.id } },
    el("td", { className: "name", dataset: { label: "Name" } }, el("span", { className: "filename", textContent: name, title: name })),
    el("td", { className: "id", dataset: { label: "Key" } }, el("code", { textContent: key.redacted_value, title: key.id })),
    el("td", { dataset: { label: "Owner" }, textContent: ownerOf(key) }),
    el("td", { dataset: { label: "Created" }, textContent: formatTime(key.created_at), title: formatTimeFull(key.created_at) }),
    el("td", { className: "col-actions" }, actions),
  );
}

export function wireProject() {
  state.accounts = new PagedList({
    prefix: "accounts",
    prev: "accounts-prev",
    next: "accounts-next",
    noun: "service account",
    fetch: (page) => api().listServiceAccounts(state.project.id, page),
    render: (accounts) => $("accounts-body").replaceChildren(...accounts.map(accountRow)),
    empty: () => "No service accounts yet.",
  });
  state.keys = new PagedList({
    prefix: "keys",
    prev: "keys-prev",
    next: "keys-next",
    noun: "key",
    fetch: (page) => api().listProjectKeys(state.project.id, page),
    render: (keys) => $("keys-body").replaceChildren(...keys.map(keyRow)),
    empty: () => (state.project && state.project.status === "archived" ? "No active key: they were revoked with the project." : "No active key."),
  });
  $("account-name").maxLength = config.admin_name_max_chars;
  $("project-close").addEventListener("click", () => {
    const id = state.project && state.project.id;
    closeProject();
    const row = id && [...$("projects-body").children].find((r) => r.dataset.id === id);
    const open = row && row.querySelector("button");
    (open || $("projects-heading")).focus();
  });
  $("account-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("account-name");
    if (input.value && state.project) await createAccount(input.value);
  });
}
