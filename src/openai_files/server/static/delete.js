/* Deleting files: a dialog that names them and asks first, then the deletes, a few at once. */

import { ApiError } from "./api.js";
import { config } from "./config.js";
import { $, el } from "./dom.js";
import { formatBytes, plural, shownName } from "./format.js";
import { showBanner } from "./messages.js";
import { api, handleError } from "./session.js";

/** Ask whether to delete `files`; if so, `onStart()`, delete them, and `onDone(ids)` with
    the ids of those deleted (a failure to delete one is shown in the banner). */
export function confirmDelete(files, { onStart, onDone }) {
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
    onStart();
    const deleted = await deleteAll(files);
    if (deleted) await onDone(deleted);
  };
  dialog.showModal();
  $("delete-cancel").focus();
}

/** The ids deleted, or null when the key stopped working on the way. */
async function deleteAll(files) {
  const failures = [];
  const deleted = [];
  const queue = [...files];
  const worker = async () => {
    while (queue.length) {
      const file = queue.shift();
      try {
        await api().deleteFile(file.id);
        deleted.push(file.id);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) throw err;
        failures.push(`${shownName(file.filename)}: ${err.message}`);
      }
    }
  };
  const workers = [];
  for (let i = 0; i < Math.min(config.parallel_deletes, files.length); i++) workers.push(worker());
  try {
    await Promise.all(workers);
  } catch (err) {
    handleError(err);
    return null;
  }
  if (failures.length) showBanner(`Could not delete ${plural(failures.length, "file")}: ${failures.join("; ")}`);
  return deleted;
}
