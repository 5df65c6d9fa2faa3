/* The console: plain modern JavaScript modules, no build step, no library. It is a client of
   the server's public /v1 API, plus the console's own routes (config, usage, download links). */

import { Api, ApiError } from "./api.js";
import { formatBytes, formatTime, formatTimeFull, plural, shownName } from "./format.js";
import { uploadFile } from "./uploads.js";

const KEY_STORAGE = "openai-files.console.key";
const PAGE_SIZE = 100;
const SEARCH_PAGE = 10000;
const SEARCH_CAP = 1000;
const PREVIEW_BYTES = 65536;
const PREVIEW_LINES = 20;
const PREVIEW_IMAGE_MAX = 20 * 1024 * 1024;
const FILE_ID = /^file-[A-Za-z0-9]{1,64}$/;
const ALL_PURPOSES = [
  "assistants", "assistants_output", "batch", "batch_output", "fine-tune",
  "fine-tune-results", "vision", "user_data", "evals",
];
const TEXT_NAME = /\.(jsonl|json|txt|csv|tsv|md)$/i;
const IMAGE_NAME = /\.(png|jpe?g|gif|webp)$/i;

const $ = (id) => document.getElementById(id);

/** A new element: `el("td", {className: "x", dataset: {label: "Name"}}, "text", child)`. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "role") node.setAttribute("role", value);
    else if (name.startsWith("aria")) node.setAttribute("aria-" + name.slice(4).toLowerCase(), value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const state = {
  api: null,
  config: null,
  order: "desc",
  purpose: "",
  pages: [undefined], // the `after` cursor of each page seen
  page: 0,
  hasMore: false,
  files: [], // the rows shown
  search: null, // the query shown, or null
  selected: new Map(), // id -> file
  seq: 0, // the latest listing or search asked for: an older answer is not shown
  uploads: [], // {file, sent, total, done}
  activeUploads: 0,
};

/* ---------- messages ---------- */

function showBanner(message) {
  $("banner-text").textContent = message;
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
  $("banner-text").textContent = "";
}

/** What an error tells the person: the API's own message. A 401 means the key no longer
    works: back to the key form, with the server's words. */
function handleError(err) {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ApiError && err.status === 401) {
    signOut(message);
    return;
  }
  showBanner(message);
}

function setStatus(text) {
  $("files-status").textContent = text;
}

/* ---------- the key ---------- */

function showKeyPanel(message) {
  $("workspace").hidden = true;
  $("session").hidden = true;
  $("key-panel").hidden = false;
  const error = $("key-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("key-input").value = "";
  $("key-input").focus();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.api = null;
  // Nothing of the last key's project stays on the page; its uploads stop.
  for (const entry of state.uploads) if (!entry.done) entry.controller.abort();
  state.uploads = [];
  state.selected.clear();
  state.files = [];
  state.seq++;
  for (const id of ["files-body", "upload-list", "pending-list"]) $(id).replaceChildren();
  $("upload-overall").hidden = true;
  $("search-input").value = "";
  hideBanner();
  showKeyPanel(message);
}

async function openWithKey(key) {
  const api = new Api(key);
  let usage;
  try {
    usage = await api.usage();
  } catch (err) {
    // A key the server refuses is forgotten; one it could not check (the server is down)
    // stays for the next try.
    if (err.status === 401 || err.status === 403) sessionStorage.removeItem(KEY_STORAGE);
    showKeyPanel(err.message);
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  state.api = api;
  $("key-panel").hidden = true;
  $("key-error").hidden = true;
  $("workspace").hidden = false;
  $("session").hidden = false;
  $("tenant").textContent = `${usage.organization} · ${usage.project}`;
  renderUsage(usage);
  refreshPending();
  resetPages();
  await loadPage(0);
  $("files-heading").focus();
}

/* ---------- usage and pending uploads ---------- */

function renderUsage(usage) {
  const quota = usage.quota_bytes || 0;
  const bar = $("usage-bar");
  bar.max = Math.max(quota, 1);
  bar.value = Math.min(usage.bytes_used, bar.max);
  const percent = quota ? (100 * usage.bytes_used) / quota : 0;
  const share = !quota ? "" : usage.bytes_used && percent < 0.1 ? " (under 0.1%)" : ` (${percent.toFixed(1)}%)`;
  $("usage-text").textContent = `${formatBytes(usage.bytes_used)} of ${formatBytes(quota)} used${share}`;
  $("usage-text").title = `${usage.bytes_used.toLocaleString("en")} of ${quota.toLocaleString("en")} bytes`;
  $("usage-text").dataset.bytes = String(usage.bytes_used);
  $("pending-count").textContent = String(usage.pending_uploads);
  $("pending-word").textContent = usage.pending_uploads === 1 ? "pending upload" : "pending uploads";
}

async function refreshUsage() {
  if (!state.api) return;
  try {
    renderUsage(await state.api.usage());
  } catch (err) {
    handleError(err);
  }
}

async function refreshPending() {
  if (!state.api) return;
  let listing;
  try {
    listing = await state.api.pendingUploads();
  } catch (err) {
    handleError(err);
    return;
  }
  const list = $("pending-list");
  list.replaceChildren();
  for (const upload of listing.data) {
    const cancel = el("button", {
      type: "button",
      className: "button subtle small",
      textContent: "Cancel",
      ariaLabel: `Cancel the upload of ${shownName(upload.filename)}`,
    });
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        await state.api.cancelUpload(upload.id);
      } catch (err) {
        handleError(err);
      }
      await Promise.all([refreshPending(), refreshUsage()]);
    });
    list.append(
      el("li", {},
        el("div", { className: "pending-text" },
          el("span", { className: "pending-name", textContent: shownName(upload.filename) }),
          el("span", { className: "muted", textContent: `${formatBytes(upload.bytes)} · ${upload.purpose} · since ${formatTime(upload.created_at)}` }),
        ),
        cancel,
      ),
    );
  }
}

/* ---------- the file list ---------- */

function resetPages() {
  state.pages = [undefined];
  state.page = 0;
  state.search = null;
  $("search-clear").hidden = true;
}

async function loadPage(index) {
  if (!state.api) return;
  const seq = ++state.seq;
  setStatus("Loading…");
  let listing;
  try {
    listing = await state.api.listFiles({
      after: state.pages[index],
      limit: PAGE_SIZE,
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
  state.hasMore = listing.has_more;
  if (listing.has_more && listing.last_id) state.pages[index + 1] = listing.last_id;
  state.pages.length = listing.has_more ? index + 2 : index + 1;
  state.search = null;
  renderFiles(listing.data);
  const first = index * PAGE_SIZE + 1;
  const last = index * PAGE_SIZE + listing.data.length;
  $("page-text").textContent = listing.data.length
    ? `Page ${index + 1} · files ${first}–${last}${listing.has_more ? "" : ` of ${last}`}`
    : `Page ${index + 1}`;
  $("prev-page").disabled = index === 0;
  $("next-page").disabled = !listing.has_more;
  setStatus(listing.data.length || index > 0 ? "" : state.purpose ? `No ${state.purpose} files.` : "No files yet: upload some above.");
}

async function runSearch(query) {
  if (!state.api) return;
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
  let matches = [];
  if (FILE_ID.test(q)) {
    // An id: ask for that file directly.
    setStatus(`Looking up ${q}…`);
    try {
      matches = [await state.api.getFile(q)];
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
    renderFiles(matches);
    setStatus(`1 file with id ${q}.`);
    return;
  }
  // A name: the API has no search, so page through the list (the largest pages it gives)
  // and keep the files whose name or id holds the query, ignoring case.
  const needle = q.toLowerCase();
  let after;
  let seen = 0;
  let capped = false;
  try {
    for (;;) {
      setStatus(`Searching… ${plural(seen, "file")} looked at`);
      const listing = await state.api.listFiles({ after, limit: SEARCH_PAGE, order: state.order, purpose: state.purpose });
      seen += listing.data.length;
      for (const file of listing.data) {
        if (file.filename.toLowerCase().includes(needle) || file.id.toLowerCase().includes(needle)) {
          matches.push(file);
        }
      }
      if (seq !== state.seq) return; // a newer search or listing took over
      if (matches.length >= SEARCH_CAP) {
        capped = listing.has_more || matches.length > SEARCH_CAP;
        matches = matches.slice(0, SEARCH_CAP);
        break;
      }
      if (!listing.has_more || !listing.last_id) break;
      after = listing.last_id;
    }
  } catch (err) {
    if (seq !== state.seq) return;
    setStatus("");
    handleError(err);
    return;
  }
  renderFiles(matches);
  const kind = state.purpose ? `${state.purpose} file` : "file";
  const first = capped ? ` (the first ${SEARCH_CAP})` : "";
  setStatus(
    matches.length
      ? `${plural(matches.length, "file")} named like “${q}”${first}, among ${plural(seen, kind)}.`
      : `No file named like “${q}” among ${plural(seen, kind)}.`,
  );
}

function reload() {
  if (state.search) return runSearch(state.search);
  return loadPage(state.page);
}

/** Whether the server serves the file's content: it refuses some purposes (`assistants`,
    `user_data`), and says which in the console's config. */
function downloadable(file) {
  return !state.config.no_download_purposes.includes(file.purpose);
}

function previewKind(file) {
  if (file.purpose === "vision" || IMAGE_NAME.test(file.filename)) return "image";
  if (TEXT_NAME.test(file.filename) || ["batch", "fine-tune", "batch_output", "evals"].includes(file.purpose)) return "text";
  return null;
}

function renderFiles(files) {
  state.files = files;
  const body = $("files-body");
  body.replaceChildren();
  for (const file of files) {
    const check = el("input", { type: "checkbox", checked: state.selected.has(file.id), ariaLabel: `Select ${shownName(file.filename)}` });
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
      if (previewKind(file)) {
        const preview = el("button", { type: "button", className: "button small", textContent: "Preview", ariaLabel: `Preview ${shownName(file.filename)}` });
        preview.addEventListener("click", () => openPreview(file, preview));
        actions.append(preview);
      }
      const download = el("button", { type: "button", className: "button small", textContent: "Download", ariaLabel: `Download ${shownName(file.filename)}` });
      download.addEventListener("click", () => startDownload(file, download));
      actions.append(download);
    }
    const remove = el("button", { type: "button", className: "button small danger-text", textContent: "Delete", ariaLabel: `Delete ${shownName(file.filename)}` });
    remove.addEventListener("click", () => confirmDelete([file]));
    actions.append(remove);
    const row = el("tr", { dataset: { id: file.id } },
      el("td", { className: "col-check" }, check),
      el("td", { className: "name", dataset: { label: "Name" } }, el("span", { className: "filename", textContent: shownName(file.filename), title: shownName(file.filename) })),
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

/* ---------- delete ---------- */

function confirmDelete(files) {
  const dialog = $("delete-dialog");
  $("delete-title").textContent = files.length === 1 ? "Delete this file?" : `Delete ${files.length} files?`;
  $("delete-intro").textContent = files.length === 1 ? "This file will be deleted for good:" : "These files will be deleted for good:";
  const names = $("delete-names");
  names.replaceChildren(
    ...files.map((f) => el("li", {}, el("strong", { textContent: shownName(f.filename) }), el("span", { className: "muted", textContent: ` ${f.id} · ${formatBytes(f.bytes)}` }))),
  );
  $("delete-confirm").textContent = files.length === 1 ? "Delete" : `Delete ${files.length} files`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    dialog.onclose = null;
    if (dialog.returnValue !== "confirm") return;
    await deleteFiles(files);
  };
  dialog.showModal();
  $("delete-cancel").focus();
}

async function deleteFiles(files) {
  setStatus(`Deleting ${plural(files.length, "file")}…`);
  const failures = [];
  let deleted = 0;
  const queue = [...files];
  const worker = async () => {
    while (queue.length) {
      const file = queue.shift();
      try {
        await state.api.deleteFile(file.id);
        deleted++;
        state.selected.delete(file.id);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) throw err;
        failures.push(`${shownName(file.filename)}: ${err.message}`);
      }
    }
  };
  try {
    await Promise.all([worker(), worker(), worker(), worker()]);
  } catch (err) {
    handleError(err);
    return;
  }
  if (failures.length) showBanner(`Could not delete ${plural(failures.length, "file")}: ${failures.join("; ")}`);
  if (!state.search && state.page > 0 && deleted >= state.files.length) state.page -= 1;
  await reload();
  setStatus(`Deleted ${plural(deleted, "file")}.`);
  $("files-heading").focus();
  refreshUsage();
}

/* ---------- download and preview ---------- */

async function startDownload(file, button) {
  button.disabled = true;
  try {
    // A link of a minute for this file alone: the key never goes into a URL, and the
    // browser downloads it itself (to disk, with its own progress).
    const link = await state.api.downloadLink(file.id);
    const anchor = $("download-anchor");
    anchor.href = link.url;
    anchor.download = file.filename;
    anchor.click();
    setStatus(`Downloading ${shownName(file.filename)}…`);
  } catch (err) {
    handleError(err);
  } finally {
    button.disabled = false;
  }
}

let previewUrl = null;

async function openPreview(file, button) {
  const dialog = $("preview-dialog");
  const content = $("preview-content");
  $("preview-title").textContent = shownName(file.filename);
  $("preview-note").textContent = "Loading…";
  content.replaceChildren();
  dialog.onclose = () => {
    content.replaceChildren();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    button.focus();
  };
  dialog.showModal();
  try {
    if (file.bytes === 0) {
      $("preview-note").textContent = "The file is empty.";
      return;
    }
    if (previewKind(file) === "image") {
      if (file.bytes > PREVIEW_IMAGE_MAX) {
        $("preview-note").textContent = `The image is ${formatBytes(file.bytes)}: download it to see it.`;
        return;
      }
      const blob = await (await state.api.content(file.id)).blob();
      previewUrl = URL.createObjectURL(blob);
      content.append(el("img", { src: previewUrl, alt: shownName(file.filename), className: "preview-image" }));
      $("preview-note").textContent = `${formatBytes(file.bytes)} · ${file.id}`;
      return;
    }
    const response = await state.api.head(file.id, PREVIEW_BYTES);
    const bytes = new Uint8Array(await response.arrayBuffer());
    let text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
    const partial = file.bytes > bytes.length;
    let lines = text.split("\n");
    if (partial && lines.length > 1) lines = lines.slice(0, -1); // the last one is cut short
    const shown = lines.filter((line, i) => i < lines.length - 1 || line !== "").slice(0, PREVIEW_LINES);
    const list = el("ol", { className: "preview-lines" });
    for (const line of shown) {
      list.append(el("li", {}, el("code", { textContent: line.replace(/\r$/, "") })));
    }
    content.append(list);
    $("preview-note").textContent =
      `The first ${plural(shown.length, "line")} of ${formatBytes(file.bytes)} · ${file.id}`;
  } catch (err) {
    $("preview-note").textContent = "";
    content.append(el("p", { className: "error", role: "alert", textContent: err.message }));
    if (err instanceof ApiError && err.status === 401) {
      dialog.close();
      handleError(err);
    }
  }
}

/* ---------- uploads ---------- */

function renderOverall() {
  const active = state.uploads;
  const total = active.reduce((a, u) => a + u.total, 0);
  const sent = active.reduce((a, u) => a + u.sent, 0);
  const box = $("upload-overall");
  box.hidden = active.length === 0;
  const bar = $("overall-bar");
  bar.max = Math.max(total, 1);
  bar.value = Math.min(sent, bar.max);
  const uploaded = active.filter((u) => u.done && !u.failed).length;
  const failed = active.filter((u) => u.failed).length;
  $("overall-text").textContent =
    `${uploaded} of ${plural(active.length, "file")} uploaded${failed ? `, ${failed} failed` : ""}` +
    ` · ${formatBytes(sent)} of ${formatBytes(total)}`;
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    reload();
    refreshUsage();
    refreshPending();
  }, 150);
}

function queueFiles(fileList) {
  const files = [...fileList];
  if (!files.length || !state.api) return;
  if (state.activeUploads === 0) state.uploads = state.uploads.filter((u) => !u.done);
  const purpose = $("upload-purpose").value;
  for (const file of files) {
    const entry = { file, sent: 0, total: file.size, done: false, controller: new AbortController() };
    state.uploads.push(entry);
    const bar = el("progress", { max: Math.max(file.size, 1), value: 0, ariaLabel: `Progress of ${file.name}` });
    const step = el("span", { className: "upload-step", textContent: "Waiting" });
    const stop = el("button", { type: "button", className: "button subtle small", textContent: "Stop", ariaLabel: `Stop uploading ${file.name}` });
    stop.addEventListener("click", () => entry.controller.abort());
    const item = el("li", { className: "upload-item", dataset: { name: file.name } },
      el("div", { className: "upload-line" },
        el("span", { className: "upload-name", textContent: shownName(file.name) }),
        el("span", { className: "muted", textContent: `${formatBytes(file.size)} · ${purpose}` }),
        stop,
      ),
      bar,
      step,
    );
    $("upload-list").prepend(item);
    entry.run = async () => {
      state.activeUploads++;
      try {
        const result = await uploadFile(state.api, state.config, file, purpose, {
          onProgress: (sent) => {
            entry.sent = sent;
            bar.value = sent;
            renderOverall();
          },
          onStep: (text) => {
            step.textContent = text;
          },
          signal: entry.controller.signal,
        });
        entry.sent = entry.total;
        bar.value = bar.max;
        item.classList.add("ok");
        step.textContent = `Uploaded as ${result.id}`;
      } catch (err) {
        entry.total = entry.sent; // out of the overall bar's remaining work
        entry.failed = true;
        item.classList.add("failed");
        step.textContent = err.code === "aborted" ? "Stopped." : err.message;
        step.setAttribute("role", "alert");
        if (err instanceof ApiError && err.status === 401) handleError(err);
      } finally {
        entry.done = true;
        stop.remove();
        state.activeUploads--;
        renderOverall();
        refreshSoon();
        pump();
      }
    };
  }
  renderOverall();
  pump();
}

const PARALLEL_FILES = 2;
function pump() {
  const running = state.uploads.filter((u) => u.started && !u.done).length;
  let free = PARALLEL_FILES - running;
  for (const entry of state.uploads) {
    if (free <= 0) break;
    if (!entry.started) {
      entry.started = true;
      free--;
      entry.run();
    }
  }
}

/* ---------- wiring ---------- */

function fillPurposes(config) {
  const upload = $("upload-purpose");
  upload.replaceChildren(...config.purposes.map((p) => el("option", { value: p, textContent: p })));
  const filter = $("purpose-filter");
  const known = [...config.purposes, ...ALL_PURPOSES.filter((p) => !config.purposes.includes(p))];
  filter.replaceChildren(el("option", { value: "", textContent: "All purposes" }), ...known.map((p) => el("option", { value: p, textContent: p })));
  $("threshold-text").textContent = formatBytes(config.upload_threshold_bytes);
}

function wire() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (key) openWithKey(key);
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("banner-close").addEventListener("click", hideBanner);
  $("usage-refresh").addEventListener("click", () => {
    refreshUsage();
    refreshPending();
  });
  $("files-refresh").addEventListener("click", () => reload());
  $("prev-page").addEventListener("click", () => loadPage(Math.max(0, state.page - 1)));
  $("next-page").addEventListener("click", () => loadPage(state.page + 1));
  $("purpose-filter").addEventListener("change", (event) => {
    state.purpose = event.target.value;
    const query = state.search;
    resetPages();
    if (query) runSearch(query);
    else loadPage(0);
  });
  const setOrder = (order) => {
    state.order = order;
    $("order-select").value = order;
    $("created-header").setAttribute("aria-sort", order === "asc" ? "ascending" : "descending");
    $("sort-mark").textContent = order === "asc" ? "↑" : "↓";
    const query = state.search;
    resetPages();
    if (query) runSearch(query);
    else loadPage(0);
  };
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
    if (state.selected.size) confirmDelete([...state.selected.values()]);
  });
  const input = $("file-input");
  $("choose-files").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    queueFiles(input.files);
    input.value = "";
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    queueFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not replace the console with the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  window.addEventListener("beforeunload", (event) => {
    if (state.activeUploads > 0) event.preventDefault();
  });
}

async function boot() {
  wire();
  try {
    state.config = await new Api("").config();
  } catch (err) {
    showBanner(`The console's settings could not be read: ${err.message}`);
    return;
  }
  fillPurposes(state.config);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) await openWithKey(key);
  else showKeyPanel("");
}

boot();
