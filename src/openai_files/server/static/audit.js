/* The audit log of the administration view: the organization's events newest first (the
   API's order), a page at a time with its `after` cursor, of one event type or all, of one
   project or all (the API's `event_types[]` and `project_ids[]`). Each row shows when, what,
   who (the key that acted and its service account), in which project, and the event's own
   details, every text from the server escaped as file names are. After an action of this
   view, the newest page is shown again. */

import { config } from "./config.js";
import { $, el } from "./dom.js";
import { formatBytes, formatTime, formatTimeFull, shownName } from "./format.js";
import { PagedList } from "./pages.js";
import { api, handleError, onAdminSignIn, onSignOut } from "./session.js";

const state = {
  type: "", // the event type shown, or "" for all
  project: "", // the project id shown, or "" for all
  list: null, // the PagedList
  choicesSeq: 0, // the latest reading of the project filter's choices
};

/** Who acted: the key and the service account that owns it, a user, or the server itself
    (no actor: its command line, or its first key). */
function actorCell(actor) {
  const line = (text, code) =>
    el("span", { className: "audit-line" }, text, code ? el("code", { textContent: shownName(code) }) : null);
  if (!actor) return el("span", { className: "muted", textContent: "The server (its command line)" });
  if (actor.type === "api_key" && actor.api_key) {
    const key = actor.api_key;
    const user = key.user && (key.user.email || key.user.id);
    return el("div", {},
      key.type === "service_account" && key.service_account ? line("Service account ", key.service_account.id) : null,
      user ? line(shownName(user)) : null,
      line("Key ", key.id),
    );
  }
  if (actor.type === "session" && actor.session) {
    const user = actor.session.user || {};
    const who = shownName(user.email || user.id || "A user");
    return line(actor.session.ip_address ? `${who} from ${shownName(actor.session.ip_address)}` : who);
  }
  return el("span", { textContent: shownName(String(actor.type || "—")) });
}

/** One field of an event's details in words: sizes and times as the tables show them,
    strings escaped, objects as `name: value`. */
function fieldText(name, value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number" && name === "bytes") return formatBytes(value);
  if (typeof value === "number" && name.endsWith("_at")) return formatTime(value);
  if (typeof value === "string") return shownName(value);
  if (Array.isArray(value)) return value.map((item) => fieldText(name, item)).join(", ");
  if (typeof value === "object") return fieldsText(value);
  return String(value);
}

function fieldsText(object) {
  return Object.entries(object)
    .map(([name, value]) => `${shownName(name)}: ${fieldText(name, value)}`)
    .join(", ");
}

/** The event's own object (under its `type`, as OpenAI writes it): its id, then the rest. */
function details(event) {
  const own = event[event.type];
  if (!own || typeof own !== "object") return el("span", { className: "muted", textContent: "—" });
  const { id, data, changes_requested: changes, ...rest } = own;
  // OpenAI's `data` (what it was made with) and `changes_requested` (what changed).
  const lines = [
    data && typeof data === "object" ? fieldsText(data) : data !== undefined ? fieldText("data", data) : "",
    changes !== undefined ? `changed ${changes && typeof changes === "object" ? fieldsText(changes) : fieldText("changes", changes)}` : "",
    Object.keys(rest).length ? fieldsText(rest) : "",
  ].filter(Boolean);
  return el("div", {},
    id ? el("code", { className: "audit-target", textContent: shownName(String(id)) }) : null,
    ...lines.map((text) => el("span", { className: "audit-details", textContent: text })),
  );
}

function eventRow(event) {
  const project = event.project;
  return el("tr", { dataset: { id: event.id, type: event.type } },
    el("td", { className: "audit-time", dataset: { label: "Time" }, textContent: formatTime(event.effective_at), title: formatTimeFull(event.effective_at) }),
    el("td", { dataset: { label: "Event" } }, el("span", { className: "tag", textContent: shownName(event.type) })),
    el("td", { className: "audit-actor", dataset: { label: "Actor" } }, actorCell(event.actor)),
    el("td", { dataset: { label: "Project" } },
      project
        ? el("div", {},
            project.name ? el("span", { className: "filename", textContent: shownName(project.name) }) : null,
            el("code", { className: "muted audit-project-id", textContent: shownName(project.id) }),
          )
        : el("span", { className: "muted", textContent: "—" }),
    ),
    el("td", { className: "audit-detail", dataset: { label: "Details" } }, details(event)),
  );
}

/** The page of events shown anew when it is the newest (an action was just recorded); an
    older page stays as it is. */
export function auditChanged() {
  if (state.list && state.list.page === 0) state.list.load(0);
}

/** The project filter's choices: the organization's projects, archived ones too, read a
    full page at a time up to the config's `audit_projects_max`. */
export async function refreshProjectChoices() {
  if (!api()) return;
  const seq = ++state.choicesSeq;
  const projects = [];
  let after;
  try {
    for (;;) {
      const limit = Math.min(config.admin_list_limit_max, config.audit_projects_max - projects.length);
      const page = await api().listProjects({ after, limit, includeArchived: true });
      projects.push(...page.data);
      if (!page.has_more || projects.length >= config.audit_projects_max) break;
      after = page.last_id;
    }
  } catch (err) {
    if (seq === state.choicesSeq) handleError(err);
    return;
  }
  if (seq !== state.choicesSeq) return;
  const select = $("audit-project");
  const options = projects.map((p) =>
    el("option", { value: p.id, textContent: `${shownName(p.name)} (${p.id})${p.status === "archived" ? " · archived" : ""}` }),
  );
  if (state.project && !projects.some((p) => p.id === state.project)) {
    options.push(el("option", { value: state.project, textContent: state.project }));
  }
  select.replaceChildren(el("option", { value: "", textContent: "All projects" }), ...options);
  select.value = state.project;
}

export function wireAudit() {
  state.list = new PagedList({
    prefix: "audit",
    prev: "audit-newer",
    next: "audit-older",
    noun: "event",
    fetch: (page) =>
      api().listAuditLogs({
        ...page,
        eventTypes: state.type ? [state.type] : [],
        projectIds: state.project ? [state.project] : [],
      }),
    render: (events) => $("audit-body").replaceChildren(...events.map(eventRow)),
    empty: () => (state.type || state.project ? "No events of this type or project." : "No events yet."),
  });
  $("audit-type").replaceChildren(
    el("option", { value: "", textContent: "All event types" }),
    ...(config.audit_event_types || []).map((t) => el("option", { value: t, textContent: t })),
  );
  $("audit-refresh").addEventListener("click", () => state.list.load(0));
  $("audit-type").addEventListener("change", (event) => {
    state.type = event.target.value;
    state.list.load(0);
  });
  $("audit-project").addEventListener("change", (event) => {
    state.project = event.target.value;
    state.list.load(0);
  });
  onAdminSignIn(async () => {
    state.type = state.project = "";
    $("audit-type").value = "";
    await Promise.all([refreshProjectChoices(), state.list.load(0)]);
  });
  onSignOut(() => {
    state.choicesSeq++;
    state.list.clear();
    $("audit-project").replaceChildren(el("option", { value: "", textContent: "All projects" }));
  });
}
