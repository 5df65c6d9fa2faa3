/* The usage panel: the organization's bytes against its quota, and the project's pending
   uploads, each of which can be cancelled. */

import { $, el } from "./dom.js";
import { formatBytes, formatTime, shownName } from "./format.js";
import { api, handleError, onSignIn, onSignOut } from "./session.js";

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

export async function refreshUsage() {
  if (!api()) return;
  try {
    renderUsage(await api().usage());
  } catch (err) {
    handleError(err);
  }
}

export async function refreshPending() {
  if (!api()) return;
  let listing;
  try {
    listing = await api().pendingUploads();
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
        await api().cancelUpload(upload.id);
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

export function wireUsage() {
  $("usage-refresh").addEventListener("click", () => {
    refreshUsage();
    refreshPending();
  });
  onSignIn((usage) => {
    renderUsage(usage);
    refreshPending();
  });
  onSignOut(() => $("pending-list").replaceChildren());
}
