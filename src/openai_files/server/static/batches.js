/* The batches view: a page of the key's batches at a time, newest first (the API's order),
   paged with its `after` cursor; each with its status, its progress and counts, its times,
   its input, output and error files to download, and Cancel while it may be cancelled.
   While a batch shown runs, the page is asked for again every `batch_poll_seconds` (the
   config's), as long as the console is open and the tab is shown; never otherwise. */

import { config } from "./config.js";
import { batchName, confirmCancel } from "./cancel.js";
import { $, el } from "./dom.js";
import { startDownload } from "./download.js";
import { formatTime, formatTimeFull, plural, shownName } from "./format.js";
import { reload as reloadFiles } from "./files.js";
import { api, handleError, onSignIn, onSignOut } from "./session.js";
import { refreshUsage } from "./usage.js";

/** Statuses of a batch that will still change: the view polls while one is shown. */
const RUNNING = new Set(["validating", "in_progress", "finalizing", "cancelling"]);
/** Statuses from which a batch may be cancelled (the API refuses the others). */
const CANCELLABLE = new Set(["validating", "in_progress"]);
/** How a batch ended: the time field, and its word. */
const ENDINGS = [
  ["completed_at", "Completed"],
  ["failed_at", "Failed"],
  ["expired_at", "Expired"],
  ["cancelled_at", "Cancelled"],
];

const state = {
  pages: [undefined], // the `after` cursor of each page seen
  page: 0,
  batches: [], // the batches shown
  running: new Set(), // ids of the batches shown that were running at the last look
  timer: null, // the next poll, while one is due
  seq: 0, // the latest listing asked for: an older answer is not shown
};

function setStatus(text) {
  $("batches-status").textContent = text;
}

function stopPolling() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
}

/** Poll again later if a batch shown runs, the console is open and the tab is shown. */
function schedule() {
  stopPolling();
  if (!api() || document.hidden || state.running.size === 0) return;
  state.timer = setTimeout(() => {
    state.timer = null;
    loadPage(state.page, { quiet: true });
  }, config.batch_poll_seconds * 1000);
}

async function loadPage(index, { quiet = false } = {}) {
  if (!api()) return;
  stopPolling();
  const seq = ++state.seq;
  if (!quiet) setStatus("Loading…");
  let listing;
  try {
    listing = await api().listBatches({ after: state.pages[index], limit: config.page_batches });
  } catch (err) {
    if (seq !== state.seq) return;
    // No more polling after a failure: Refresh tries again.
    setStatus("Not refreshed: the last try failed. Refresh tries again.");
    handleError(err);
    return;
  }
  if (seq !== state.seq) return;
  state.page = index;
  if (listing.has_more && listing.last_id) state.pages[index + 1] = listing.last_id;
  state.pages.length = listing.has_more ? index + 2 : index + 1;
  const before = state.running;
  state.running = new Set(listing.data.filter((b) => RUNNING.has(b.status)).map((b) => b.id));
  renderBatches(listing.data);
  const size = config.page_batches;
  const first = index * size + 1;
  const last = index * size + listing.data.length;
  $("batches-page-text").textContent = listing.data.length
    ? `Page ${index + 1} · batches ${first}–${last}${listing.has_more ? "" : ` of ${last}`}`
    : `Page ${index + 1}`;
  $("batches-newer").disabled = index === 0;
  $("batches-older").disabled = !listing.has_more;
  if (!listing.data.length && index === 0) setStatus("No batches yet.");
  else if (state.running.size) {
    setStatus(`${plural(state.running.size, "batch", "batches")} running · refreshed every ${config.batch_poll_seconds} s`);
  } else setStatus("");
  // A batch that ended made its output and error files, and they count in the usage.
  if ([...before].some((id) => !state.running.has(id) && listing.data.some((b) => b.id === id))) {
    reloadFiles();
    refreshUsage();
  }
  schedule();
}

/** Show the page shown as the server has it now. */
export function reloadBatches() {
  return loadPage(state.page);
}

function ending(batch) {
  for (const [field, word] of ENDINGS) {
    if (batch[field] !== null && batch[field] !== undefined) return [word, batch[field]];
  }
  return null;
}

function fileButton(text, label, fileId) {
  const node = el("button", {
    type: "button",
    className: "button small",
    textContent: text,
    ariaLabel: label,
    title: fileId,
    dataset: { action: text.toLowerCase() },
  });
  node.addEventListener("click", () => startDownload({ id: fileId }, node, setStatus));
  return node;
}

function errorsOf(batch) {
  const data = (batch.errors && batch.errors.data) || [];
  if (!data.length) return null;
  const [first] = data;
  const where = first.line ? `Line ${first.line}: ` : "";
  const more = data.length > 1 ? ` (and ${plural(data.length - 1, "more error")})` : "";
  return el("p", { className: "batch-errors", textContent: `${where}${shownName(first.message)}${more}` });
}

function batchRow(batch) {
  const name = batchName(batch);
  const counts = batch.request_counts;
  const done = counts.completed + counts.failed;
  const running = RUNNING.has(batch.status);
  const bar = el("progress", { ariaLabel: `Progress of ${batch.id}` });
  if (counts.total) {
    bar.max = counts.total;
    bar.value = done;
  } else if (!running) {
    bar.max = 1;
    bar.value = 0;
  } // else: no count yet (the input is being checked), the bar moves without a value
  const ended = ending(batch);
  const files = el("div", { className: "actions batch-files" },
    fileButton("Input", `Download the input file of ${batch.id}`, batch.input_file_id),
    batch.output_file_id ? fileButton("Output", `Download the output file of ${batch.id}`, batch.output_file_id) : null,
    batch.error_file_id ? fileButton("Errors", `Download the error file of ${batch.id}`, batch.error_file_id) : null,
  );
  const actions = el("div", { className: "actions" });
  if (CANCELLABLE.has(batch.status)) {
    const cancel = el("button", {
      type: "button",
      className: "button small danger-text",
      textContent: "Cancel",
      ariaLabel: `Cancel ${batch.id}`,
      dataset: { action: "cancel" },
    });
    cancel.addEventListener("click", () =>
      confirmCancel(batch, {
        onDone: async () => {
          await reloadBatches();
          $("batches-heading").focus();
        },
      }),
    );
    actions.append(cancel);
  }
  const description = batch.metadata && batch.metadata.description;
  return el("tr", { dataset: { id: batch.id, status: batch.status } },
    el("td", { className: "batch", dataset: { label: "Batch" } },
      el("div", {},
        el("code", { className: "batch-id", textContent: batch.id }),
        description ? el("span", { className: "filename", textContent: shownName(description), title: name }) : null,
        el("span", { className: "muted batch-endpoint", textContent: batch.endpoint }),
      ),
    ),
    el("td", { dataset: { label: "Status" } },
      el("div", {},
        el("span", { className: `tag batch-status status-${batch.status}`, textContent: batch.status }),
        errorsOf(batch),
      ),
    ),
    el("td", { className: "batch-progress", dataset: { label: "Progress" } },
      el("div", {},
        bar,
        el("span", {
          className: "batch-counts",
          textContent: `${counts.completed} completed · ${counts.failed} failed · ${counts.total} total`,
          title: counts.total ? `${done} of ${counts.total} requests done (${Math.floor((100 * done) / counts.total)}%)` : "",
        }),
      ),
    ),
    el("td", { dataset: { label: "Created" }, textContent: formatTime(batch.created_at), title: formatTimeFull(batch.created_at) }),
    el("td", {
      dataset: { label: "Ended" },
      textContent: ended ? `${formatTime(ended[1])} · ${ended[0].toLowerCase()}` : "—",
      title: ended ? `${ended[0]} ${formatTimeFull(ended[1])}` : "Not ended",
    }),
    el("td", { dataset: { label: "Files" } }, files),
    el("td", { className: "col-actions" }, actions),
  );
}

/** The rows of `batches`, in order. A row whose batch did not change since it was shown is
    kept as it is (a poll moves no focus, and a button in it stays where it was); a button
    focused in a changed row has its twin of the new row focused. */
function renderBatches(batches) {
  state.batches = batches;
  const body = $("batches-body");
  const focused = document.activeElement;
  const focusedRow = focused && body.contains(focused) ? focused.closest("tr") : null;
  const old = new Map([...body.children].map((row) => [row.dataset.id, row]));
  const rows = batches.map((batch) => {
    const sig = JSON.stringify(batch);
    const kept = old.get(batch.id);
    if (kept && kept.dataset.sig === sig) return kept;
    const row = batchRow(batch);
    row.dataset.sig = sig;
    return row;
  });
  rows.forEach((row, i) => {
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  while (body.children.length > rows.length) body.lastElementChild.remove();
  if (focusedRow && !focusedRow.isConnected) {
    const row = rows.find((r) => r.dataset.id === focusedRow.dataset.id);
    const twin = row && focused.dataset.action ? row.querySelector(`[data-action="${focused.dataset.action}"]`) : null;
    (twin || $("batches-heading")).focus();
  }
}

export function wireBatches() {
  $("batches-no-engine").hidden = config.runs_batches;
  $("batches-refresh").addEventListener("click", () => reloadBatches());
  $("batches-newer").addEventListener("click", () => loadPage(Math.max(0, state.page - 1)));
  $("batches-older").addEventListener("click", () => loadPage(state.page + 1));
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopPolling();
    else if (api() && state.running.size) loadPage(state.page, { quiet: true });
  });
  onSignIn(async () => {
    state.pages = [undefined];
    state.running = new Set();
    await loadPage(0);
  });
  onSignOut(() => {
    stopPolling();
    state.seq++;
    state.batches = [];
    state.running = new Set();
    $("batches-body").replaceChildren();
    $("batches-page-text").textContent = "";
    setStatus("");
  });
}
