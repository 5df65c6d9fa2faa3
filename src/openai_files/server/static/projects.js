/* The projects of the administration view: the organization's projects a page at a time
   (the archived ones too when asked), a form to create one, and on each row Open (its
   service accounts and keys: project.js), Rename and Archive. */

import { askName, confirmAction } from "./ask.js";
import { auditChanged, refreshProjectChoices } from "./audit.js";
import { config } from "./config.js";
import { $, el } from "./dom.js";
import { formatTime, formatTimeFull } from "./format.js";
import { PagedList } from "./pages.js";
import { closeProject, openProject, openedProject, projectChanged, projectName } from "./project.js";
import { api, handleError, onAdminSignIn, onSignOut } from "./session.js";

const state = {
  archived: false, // whether the list shows archived projects
  list: null, // the PagedList
};

function button(text, label, onClick, className = "button small") {
  const node = el("button", { type: "button", className, textContent: text, ariaLabel: label });
  node.addEventListener("click", () => onClick(node));
  return node;
}

async function rename(project) {
  const name = await askName({
    title: `Rename ${projectName(project)}`,
    value: project.name,
    maxLength: config.admin_name_max_chars,
    fallback: "projects-heading",
  });
  if (name === null || name === project.name) return;
  let renamed;
  try {
    renamed = await api().renameProject(project.id, name);
  } catch (err) {
    handleError(err);
    return;
  }
  state.list.setStatus(`Renamed ${project.id} to ${projectName(renamed)}.`);
  await afterChange(renamed);
}

async function archive(project) {
  const yes = await confirmAction({
    title: `Archive ${projectName(project)}?`,
    text:
      `Every API key of ${project.id} is revoked at once, its service accounts can no longer ` +
      "be used, and it takes no new key. An archived project cannot be unarchived.",
    confirm: "Archive project",
    fallback: "projects-heading",
  });
  if (!yes) return;
  let archived;
  try {
    archived = await api().archiveProject(project.id);
  } catch (err) {
    handleError(err);
    return;
  }
  await afterChange(archived);
  state.list.setStatus(`Archived ${projectName(archived)}.`);
}

/** After a project changed: the list, the open project and the audit log as they are now. */
async function afterChange(project) {
  await state.list.reload();
  projectChanged(project);
  refreshProjectChoices();
  auditChanged();
}

function projectRow(project) {
  const name = projectName(project);
  const archived = project.status === "archived";
  const actions = el("div", { className: "actions" },
    button("Open", `Open ${name}: its service accounts and keys`, () => openProject(project)),
    archived ? null : button("Rename", `Rename ${name}`, () => rename(project)),
    archived ? null : button("Archive", `Archive ${name}`, () => archive(project), "button small danger-text"),
  );
  const opened = openedProject();
  return el("tr", { dataset: { id: project.id, status: project.status }, className: opened && opened.id === project.id ? "current" : "" },
    el("td", { className: "name", dataset: { label: "Name" } }, el("span", { className: "filename", textContent: name, title: name })),
    el("td", { className: "id", dataset: { label: "ID" } }, el("code", { textContent: project.id })),
    el("td", { dataset: { label: "Status" } }, el("span", { className: `tag status-${project.status}`, textContent: project.status })),
    el("td", { dataset: { label: "Created" }, textContent: formatTime(project.created_at), title: formatTimeFull(project.created_at) }),
    el("td", { className: "col-actions" }, actions),
  );
}

/** Show again the page of projects shown. */
export function reloadProjects() {
  return state.list ? state.list.reload() : null;
}

export function wireProjects() {
  state.list = new PagedList({
    prefix: "projects",
    prev: "projects-prev",
    next: "projects-next",
    noun: "project",
    fetch: (page) => api().listProjects({ ...page, includeArchived: state.archived }),
    render: (projects) => $("projects-body").replaceChildren(...projects.map(projectRow)),
    empty: () => "No projects yet: create one above.",
  });
  $("project-name").maxLength = config.admin_name_max_chars;
  $("projects-refresh").addEventListener("click", () => state.list.reload());
  $("projects-archived").addEventListener("change", (event) => {
    state.archived = event.target.checked;
    state.list.load(0);
  });
  $("project-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("project-name");
    const name = input.value;
    if (!name) return;
    let project;
    try {
      project = await api().createProject(name);
    } catch (err) {
      handleError(err);
      return;
    }
    input.value = "";
    await state.list.reload();
    // Projects list oldest first: a new one is on the last page.
    state.list.setStatus(`Created ${projectName(project)} (${project.id}); it lists last.`);
    refreshProjectChoices();
    auditChanged();
  });
  onAdminSignIn(async () => {
    state.archived = $("projects-archived").checked = false;
    await state.list.load(0);
    $("projects-heading").focus();
  });
  onSignOut(() => {
    state.list.clear();
    closeProject();
    $("project-name").value = "";
  });
}
