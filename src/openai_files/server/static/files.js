/* The files table: a page of the project's files at a time, in either order, of one purpose
   or all, or the files a search found; the selection across pages; the pager. Each row
   offers what the server allows for its file: preview, download, delete. */

import { ApiError } from "./api.js";
import { config, downloadable, isFileId } from "./config.js";
import { confirmDelete } from "./delete.js";
import { $, el } from "./dom.js";
import { startDownload } from "./download.js";
import { formatBytes, formatTime, formatTimeFull, plural, shownName } from "./format.js";
import { openPreview, previewKind } from "./preview.js";
import { searchByName } from "./search.js";
import { api, handleError, onSignIn, onSignOut } from "./session.js";
import { refreshUsage } from "./usage.js";

/* Every purpose a file may have at OpenAI, outputs too: the filter offers those the server
   takes first, then the others. */
const ALL_PURPOSES = [
  "assistants", "assistants_output", "batch", "batch_output", "fine-tune",
  "fine-tune-results", "vision", "user_data", "evals",
];

const state = {
  order: "desc",
  purpose: "",
  pages: [undefined], // the `after` cursor of each page seen
  page: 0,
  files: [], // the rows shown
  search: null, // the query shown, or null
  selected: new Map(), // id -> file
  seq: 0, // the latest listing or search asked for: an older answer is not shown
};

export function setStatus(text) {
  $("files-status").textContent = text;
}

function resetPages() {
  state.pages = [undefined];
  state.page = 0;
  state.search = null;
  $("search-clear").hidden = true;
}

async function loadPage(index) {
  if (!api()) return;
  const seq = ++state.seq;
  const size = config.page_files;
  setStatus("Loading…");
  let listing;
  try {
    listing = await api().listFiles({
      after: state.pages[index],
      limit: size,
      order: state.order,
      purpose: state.purpose,
    });
  } catch (err) {
    if (seq !== state.seq) return;
    setStatus("");
    handleError(err);
    return;
  }
  if (seq !== state.seq) return;
  state.page = index;
  if (listing.has_more && listing.last_id) state.pages[index + 1] = listing.last_id;
  state.pages.length = listing.has_more ? index + 2 : index + 1;
  state.search = null;
  renderFiles(listing.data);
  const first = index * size + 1;
  const last = index * size + listing.data.length;
  $("page-text").textContent = listing.data.length
    ? `Page ${index + 1} · files ${first}–${last}${listing.has_more ? "" : ` of ${last}`}`
    : `Page ${index + 1}`;
  $("prev-page").disabled = index === 0;
  $("next-page").disabled = !listing.has_more;
  setStatus(listing.data.length || index > 0 ? "" : state.purpose ? `No ${state.purpose} files.` : "No files yet: upload some above.");
}

async function runSearch(query) {
  if (!api()) return;
  const q = query.trim();
  if (!q) {
    resetPages();
    await loadPage(0);
    return;
  }
  const seq = ++state.seq;
  state.search = q;
  $("search-clear").hidden = false;
  $("prev-page").disabled = true;
  $("next-page").disabled = true;
  $("page-text").textContent = "";
  if (isFileId(q)) {
    // An id: ask for that file directly.
    setStatus(`Looking up ${q}…`);
    let file;
    try {
      file = await api().getFile(q);
    } catch (err) {
      if (seq !== state.seq) return;
      if (err instanceof ApiError && err.status === 404) {
        renderFiles([]);
        setStatus(err.message);
        return;
      }
      setStatus("");
      handleError(err);
      return;
    }
    if (seq !== state.seq) return;
    renderFiles([file]);
    setStatus(`1 file with id ${q}.`);
    return;
  }
  let found;
  try {
    found = await searchByName(api(), q, {
      order: state.order,
      purpose: state.purpose,
      onProgress: (seen) => setStatus(`Searching… ${plural(seen, "file")} looked at`),
      current: () => seq === state.seq,
    });
  } catch (err) {
    if (seq !== state.seq) return;
    setStatus("");
    handleError(err);
    return;
  }
  if (found === null) return; // a newer search or listing took over
  const { matches, seen, capped } = found;
  renderFiles(matches);
  const kind = state.purpose ? `${state.purpose} file` : "file";
  const first = capped ? ` (the first ${config.search_matches_max})` : "";
  setStatus(
    matches.length
      ? `${plural(matches.length, "file")} named like “${q}”${first}, among ${plural(seen, kind)}.`
      : `No file named like “${q}” among ${plural(seen, kind)}.`,
  );
}

/** Show again what is shown (the page, or the search), as the server has it now. */
export function reload() {
  if (state.search) return runSearch(state.search);
  return loadPage(state.page);
}

function button(text, label, onClick, className = "button small") {
  const node = el("button", { type: "button", className, textContent: text, ariaLabel: label });
  node.addEventListener("click", () => onClick(node));
  return node;
}

function renderFiles(files) {
  state.files = files;
  const body = $("files-body");
  body.replaceChildren();
  for (const file of files) {
    const name = shownName(file.filename);
    const check = el("input", { type: "checkbox", checked: state.selected.has(file.id), ariaLabel: `Select ${name}` });
    check.addEventListener("change", () => {
      if (check.checked) state.selected.set(file.id, file);
      else state.selected.delete(file.id);
      renderSelection();
    });
    const actions = el("div", { className: "actions" });
    if (!downloadable(file)) {
      // The server would refuse its content: no Preview or Download to fail.
      actions.append(el("span", { className: "no-download muted", textContent: "Not downloadable", title: `The server does not serve the content of ${file.purpose} files (as OpenAI).` }));
    } else {
      if (previewKind(file)) actions.append(button("Preview", `Preview ${name}`, (b) => openPreview(file, b)));
      actions.append(button("Download", `Download ${name}`, (b) => startDownload(file, b, setStatus)));
    }
    actions.append(button("Delete", `Delete ${name}`, () => deleteFiles([file]), "button small danger-text"));
    const row = el("tr", { dataset: { id: file.id } },
      el("td", { className: "col-check" }, check),
      el("td", { className: "name", dataset: { label: "Name" } }, el("span", { className: "filename", textContent: name, title: name })),
      el("td", { className: "id", dataset: { label: "ID" } }, el("code", { textContent: file.id })),
      el("td", { dataset: { label: "Purpose" } }, el("span", { className: "tag", textContent: file.purpose })),
      el("td", { className: "num", dataset: { label: "Size" }, textContent: formatBytes(file.bytes), title: `${file.bytes.toLocaleString("en")} bytes` }),
      el("td", { dataset: { label: "Created" }, textContent: formatTime(file.created_at), title: formatTimeFull(file.created_at) }),
      el("td", { dataset: { label: "Expires" }, textContent: formatTime(file.expires_at), title: formatTimeFull(file.expires_at) }),
      el("td", { className: "col-actions" }, actions),
    );
    body.append(row);
  }
  renderSelection();
}

function renderSelection() {
  const n = state.selected.size;
  $("delete-selected").disabled = n === 0;
  $("delete-selected").textContent = n ? `Delete selected (${n})` : "Delete selected";
  $("selection-text").textContent = n ? `${plural(n, "file")} selected` : "";
  const all = $("select-all");
  const onPage = state.files.filter((f) => state.selected.has(f.id)).length;
  all.checked = state.files.length > 0 && onPage === state.files.length;
  all.indeterminate = onPage > 0 && onPage < state.files.length;
}

/** Delete `files` once the person confirms it, then show what is left. */
function deleteFiles(files) {
  confirmDelete(files, {
    onStart: () => setStatus(`Deleting ${plural(files.length, "file")}…`),
    onDone: async (deleted) => {
      for (const id of deleted) state.selected.delete(id);
      if (!state.search && state.page > 0 && deleted.length >= state.files.length) state.page -= 1;
      await reload();
      setStatus(`Deleted ${plural(deleted.length, "file")}.`);
      $("files-heading").focus();
      refreshUsage();
    },
  });
}

/** The listing anew, in the order and purpose chosen: a search stays, on the new terms. */
function relist() {
  const query = state.search;
  resetPages();
  if (query) runSearch(query);
  else loadPage(0);
}

function setOrder(order) {
  state.order = order;
  $("order-select").value = order;
  $("created-header").setAttribute("aria-sort", order === "asc" ? "ascending" : "descending");
  $("sort-mark").textContent = order === "asc" ? "↑" : "↓";
  relist();
}

export function wireFiles() {
  const known = [...config.purposes, ...ALL_PURPOSES.filter((p) => !config.purposes.includes(p))];
  $("purpose-filter").replaceChildren(
    el("option", { value: "", textContent: "All purposes" }),
    ...known.map((p) => el("option", { value: p, textContent: p })),
  );
  $("files-refresh").addEventListener("click", () => reload());
  $("prev-page").addEventListener("click", () => loadPage(Math.max(0, state.page - 1)));
  $("next-page").addEventListener("click", () => loadPage(state.page + 1));
  $("purpose-filter").addEventListener("change", (event) => {
    state.purpose = event.target.value;
    relist();
  });
  $("order-select").addEventListener("change", (event) => setOrder(event.target.value));
  $("sort-created").addEventListener("click", () => setOrder(state.order === "asc" ? "desc" : "asc"));
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch($("search-input").value);
  });
  $("search-clear").addEventListener("click", () => {
    $("search-input").value = "";
    resetPages();
    loadPage(0);
    $("search-input").focus();
  });
  $("select-all").addEventListener("change", (event) => {
    for (const file of state.files) {
      if (event.target.checked) state.selected.set(file.id, file);
      else state.selected.delete(file.id);
    }
    renderFiles(state.files);
  });
  $("delete-selected").addEventListener("click", () => {
    if (state.selected.size) deleteFiles([...state.selected.values()]);
  });
  onSignIn(async () => {
    resetPages();
    await loadPage(0);
    $("files-heading").focus();
  });
  onSignOut(() => {
    state.selected.clear();
    state.files = [];
    state.seq++;
    $("files-body").replaceChildren();
    $("search-input").value = "";
  });
}
