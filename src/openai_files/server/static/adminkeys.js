/* The organization's admin keys in the administration view, newest first: create one (its
   value shown once), revoke one. The key the console is signed in with is marked; revoking
   it closes the console. */

import { confirmAction, showSecret } from "./ask.js";
import { auditChanged } from "./audit.js";
import { config } from "./config.js";
import { $, el } from "./dom.js";
import { formatTime, formatTimeFull, shownName } from "./format.js";
import { PagedList } from "./pages.js";
import { api, handleError, onAdminSignIn, onSignOut, signOut } from "./session.js";

const state = {
  own: null, // the id of the admin key in use
  list: null, // the PagedList
};

async function revoke(key) {
  const name = shownName(key.name);
  const own = key.id === state.own;
  const yes = await confirmAction({
    title: `Revoke the admin key ${name}?`,
    text:
      `${key.redacted_value} (${key.id}) stops working at once, everywhere. This cannot be undone.` +
      (own ? " It is the key this console is signed in with: the console closes." : ""),
    confirm: "Revoke admin key",
    fallback: "admin-keys-heading",
  });
  if (!yes) return;
  try {
    await api().deleteAdminKey(key.id);
  } catch (err) {
    handleError(err);
    return;
  }
  if (own) {
    signOut(`The admin key ${key.redacted_value} was revoked: open the console with another key.`);
    return;
  }
  await state.list.reload();
  state.list.setStatus(`Revoked ${key.redacted_value} (${name}).`);
  auditChanged();
}

function keyRow(key) {
  const name = shownName(key.name);
  const own = key.id === state.own;
  const revoke_ = el("button", {
    type: "button",
    className: "button small danger-text",
    textContent: "Revoke",
    ariaLabel: `Revoke the admin key ${name} (${key.redacted_value})`,
  });
  revoke_.addEventListener("click", () => revoke(key));
  return el("tr", { dataset: { id: key.id } },
    el("td", { className: "name", dataset: { label: "Name" } },
      el("span", { className: "filename", textContent: name, title: name }),
      own ? el("span", { className: "tag own-key", textContent: "this console's key" }) : null,
    ),
    el("td", { className: "id", dataset: { label: "Key" } }, el("code", { textContent: key.redacted_value })),
    el("td", { className: "id", dataset: { label: "ID" } }, el("code", { textContent: key.id })),
    el("td", { dataset: { label: "Created" }, textContent: formatTime(key.created_at), title: formatTimeFull(key.created_at) }),
    el("td", { dataset: { label: "Expires" }, textContent: formatTime(key.expires_at), title: formatTimeFull(key.expires_at) }),
    el("td", { className: "col-actions" }, el("div", { className: "actions" }, revoke_)),
  );
}

export function wireAdminKeys() {
  state.list = new PagedList({
    prefix: "admin-keys",
    prev: "admin-keys-prev",
    next: "admin-keys-next",
    noun: "admin key",
    fetch: (page) => api().listAdminKeys({ ...page, order: "desc" }),
    render: (keys) => $("admin-keys-body").replaceChildren(...keys.map(keyRow)),
    empty: () => "No admin keys.",
  });
  $("admin-key-name").maxLength = config.admin_name_max_chars;
  $("admin-keys-refresh").addEventListener("click", () => state.list.reload());
  $("admin-key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("admin-key-name");
    if (!input.value) return;
    let key;
    try {
      key = await api().createAdminKey(input.value);
    } catch (err) {
      handleError(err);
      return;
    }
    input.value = "";
    await state.list.load(0); // newest first: the new key is on the first page
    state.list.setStatus(`Created the admin key ${shownName(key.name)} (${key.id}).`);
    auditChanged();
    await showSecret({
      intro: `The admin key ${shownName(key.name)}: it manages this organization's projects, keys and audit log, and reaches no file.`,
      value: key.value,
      fallback: "admin-keys-heading",
    });
  });
  onAdminSignIn(async (organization) => {
    state.own = organization.admin_key_id;
    await state.list.load(0);
  });
  onSignOut(() => {
    state.own = null;
    state.list.clear();
    $("admin-key-name").value = "";
  });
}
