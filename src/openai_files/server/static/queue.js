/* The upload queue: files chosen or dropped, uploaded a few at once (as many as the config's
   `parallel_files`), each with its progress bar, step and Stop button, under one bar for
   them all. uploads.js sends each file. */

import { ApiError } from "./api.js";
import { config } from "./config.js";
import { $, el } from "./dom.js";
import { reload } from "./files.js";
import { formatBytes, plural, shownName } from "./format.js";
import { api, handleError, onSignOut } from "./session.js";
import { uploadFile } from "./uploads.js";
import { refreshPending, refreshUsage } from "./usage.js";

const state = {
  uploads: [], // {file, sent, total, started, done, failed, controller, run}
  active: 0, // uploads on their way
  refreshTimer: null,
};

function renderOverall() {
  const all = state.uploads;
  const total = all.reduce((a, u) => a + u.total, 0);
  const sent = all.reduce((a, u) => a + u.sent, 0);
  $("upload-overall").hidden = all.length === 0;
  const bar = $("overall-bar");
  bar.max = Math.max(total, 1);
  bar.value = Math.min(sent, bar.max);
  const uploaded = all.filter((u) => u.done && !u.failed).length;
  const failed = all.filter((u) => u.failed).length;
  $("overall-text").textContent =
    `${uploaded} of ${plural(all.length, "file")} uploaded${failed ? `, ${failed} failed` : ""}` +
    ` · ${formatBytes(sent)} of ${formatBytes(total)}`;
}

/** The files, usage and pending uploads as the server has them now, once uploads settle. */
function refreshSoon() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    reload();
    refreshUsage();
    refreshPending();
  }, 150);
}

/** The queue's entry for `file`, shown at the top of the upload list. */
function enqueue(file, purpose) {
  const entry = { file, sent: 0, total: file.size, started: false, done: false, controller: new AbortController() };
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
    state.active++;
    try {
      const result = await uploadFile(api(), config, file, purpose, {
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
      state.active--;
      renderOverall();
      refreshSoon();
      pump();
    }
  };
  return entry;
}

function queueFiles(fileList) {
  const files = [...fileList];
  if (!files.length || !api()) return;
  if (state.active === 0) state.uploads = state.uploads.filter((u) => !u.done);
  const purpose = $("upload-purpose").value;
  for (const file of files) state.uploads.push(enqueue(file, purpose));
  renderOverall();
  pump();
}

/** Start the next waiting uploads, up to the config's `parallel_files` at once. */
function pump() {
  const running = state.uploads.filter((u) => u.started && !u.done).length;
  let free = config.parallel_files - running;
  for (const entry of state.uploads) {
    if (free <= 0) break;
    if (!entry.started) {
      entry.started = true;
      free--;
      entry.run();
    }
  }
}

export function wireQueue() {
  $("upload-purpose").replaceChildren(...config.purposes.map((p) => el("option", { value: p, textContent: p })));
  $("threshold-text").textContent = formatBytes(config.upload_threshold_bytes);
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
    if (state.active > 0) event.preventDefault();
  });
  onSignOut(() => {
    for (const entry of state.uploads) if (!entry.done) entry.controller.abort();
    state.uploads = [];
    $("upload-list").replaceChildren();
    $("upload-overall").hidden = true;
  });
}
