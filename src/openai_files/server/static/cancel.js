/* Cancelling a batch: a dialog that names it and asks first, then the cancel. */

import { ApiError } from "./api.js";
import { $ } from "./dom.js";
import { plural, shownName } from "./format.js";
import { showBanner } from "./messages.js";
import { api, handleError } from "./session.js";

/** What names a batch to people: its id, and its metadata's `description` when it has one
    (shown with its hidden characters escaped, as a file's name is). */
export function batchName(batch) {
  const description = batch.metadata && batch.metadata.description;
  return description ? `${batch.id} (${shownName(description)})` : batch.id;
}

/** Ask whether to cancel `batch`; if so, cancel it and `onDone()`, whether the server took
    the cancel or refused it (the batch ended meanwhile: its message goes to the banner). */
export function confirmCancel(batch, { onDone }) {
  const dialog = $("cancel-dialog");
  const counts = batch.request_counts;
  const done = counts.completed + counts.failed;
  $("cancel-intro").textContent = counts.total
    ? `${batchName(batch)}: ${done} of ${plural(counts.total, "request")} done.`
    : `${batchName(batch)}: its input file is being checked.`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    dialog.onclose = null;
    if (dialog.returnValue !== "confirm") return;
    try {
      await api().cancelBatch(batch.id);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        handleError(err);
        return;
      }
      showBanner(`Could not cancel ${batchName(batch)}: ${err.message}`);
    }
    await onDone();
  };
  dialog.showModal();
  $("cancel-keep").focus();
}
