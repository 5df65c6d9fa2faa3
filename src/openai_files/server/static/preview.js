/* The preview dialog: the first lines of a text file (read with a Range request, never the
   whole file) or an image, up to the sizes the config gives. */

import { ApiError } from "./api.js";
import { config } from "./config.js";
import { $, el } from "./dom.js";
import { formatBytes, plural, shownName } from "./format.js";
import { api, handleError } from "./session.js";

const TEXT_NAME = /\.(jsonl|json|txt|csv|tsv|md)$/i;
const IMAGE_NAME = /\.(png|jpe?g|gif|webp)$/i;
const TEXT_PURPOSES = ["batch", "fine-tune", "batch_output", "evals"];

const state = {
  url: null, // the object URL of the image shown, freed when the dialog closes
};

/** How `file` can be previewed: "image", "text", or null (not at all). */
export function previewKind(file) {
  if (file.purpose === "vision" || IMAGE_NAME.test(file.filename)) return "image";
  if (TEXT_NAME.test(file.filename) || TEXT_PURPOSES.includes(file.purpose)) return "text";
  return null;
}

function note(text) {
  $("preview-note").textContent = text;
}

async function showImage(file, content) {
  if (file.bytes > config.preview_image_max_bytes) {
    note(`The image is ${formatBytes(file.bytes)}: download it to see it.`);
    return;
  }
  const blob = await (await api().content(file.id)).blob();
  state.url = URL.createObjectURL(blob);
  content.append(el("img", { src: state.url, alt: shownName(file.filename), className: "preview-image" }));
  note(`${formatBytes(file.bytes)} · ${file.id}`);
}

async function showText(file, content) {
  const response = await api().head(file.id, config.preview_bytes);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  const partial = file.bytes > bytes.length;
  let lines = text.split("\n");
  if (partial && lines.length > 1) lines = lines.slice(0, -1); // the last one is cut short
  const shown = lines.filter((line, i) => i < lines.length - 1 || line !== "").slice(0, config.preview_lines);
  const list = el("ol", { className: "preview-lines" });
  for (const line of shown) {
    list.append(el("li", {}, el("code", { textContent: line.replace(/\r$/, "") })));
  }
  content.append(list);
  note(`The first ${plural(shown.length, "line")} of ${formatBytes(file.bytes)} · ${file.id}`);
}

/** Open the preview of `file`; focus goes back to `button` when it closes. */
export async function openPreview(file, button) {
  const dialog = $("preview-dialog");
  const content = $("preview-content");
  $("preview-title").textContent = shownName(file.filename);
  note("Loading…");
  content.replaceChildren();
  dialog.onclose = () => {
    content.replaceChildren();
    if (state.url) URL.revokeObjectURL(state.url);
    state.url = null;
    button.focus();
  };
  dialog.showModal();
  try {
    if (file.bytes === 0) note("The file is empty.");
    else if (previewKind(file) === "image") await showImage(file, content);
    else await showText(file, content);
  } catch (err) {
    note("");
    content.append(el("p", { className: "error", role: "alert", textContent: err.message }));
    if (err instanceof ApiError && err.status === 401) {
      dialog.close();
      handleError(err);
    }
  }
}
