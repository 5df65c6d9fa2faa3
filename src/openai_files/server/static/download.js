/* Downloading a file: the server signs a link of a minute for this file alone, and the
   browser downloads it itself (to disk, with its own progress); the key never goes into a
   URL. */

import { $ } from "./dom.js";
import { shownName } from "./format.js";
import { api, handleError } from "./session.js";

/** Download `file` (a File object, or `{id}` alone: the browser then saves it under the
    name the server's Content-Disposition gives); `button` is disabled meanwhile,
    `setStatus(text)` says it started. */
export async function startDownload(file, button, setStatus) {
  button.disabled = true;
  try {
    const link = await api().downloadLink(file.id);
    const anchor = $("download-anchor");
    anchor.href = link.url;
    anchor.download = file.filename ?? "";
    anchor.click();
    setStatus(`Downloading ${file.filename === undefined ? file.id : shownName(file.filename)}…`);
  } catch (err) {
    handleError(err);
  } finally {
    button.disabled = false;
  }
}
