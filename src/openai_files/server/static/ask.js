/* The administration view's dialogs: one that asks before an action that cannot be undone
   (archive, delete, revoke), one that asks for a new name, and one that shows a new key's
   value, once, with a Copy button. Each resolves when it closes; the focus goes back to
   where it was, or to `fallback` when that element left the page meanwhile. */

import { $ } from "./dom.js";

function restoreFocus(opener, fallback) {
  const target = opener && opener.isConnected ? opener : fallback ? $(fallback) : null;
  if (target) target.focus();
}

/** Ask `title` with `text`; resolves to true when `confirm` (the button's words) is pressed,
    false on Cancel or Escape. */
export function confirmAction({ title, text, confirm, fallback = null }) {
  const dialog = $("confirm-dialog");
  const opener = document.activeElement;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = confirm;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.onclose = () => {
      dialog.onclose = null;
      restoreFocus(opener, fallback);
      resolve(dialog.returnValue === "confirm");
    };
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

/** Ask for a name (`value` to start from, at most `maxLength` characters); resolves to the
    name entered, or null on Cancel or Escape. */
export function askName({ title, value, maxLength, fallback = null }) {
  const dialog = $("rename-dialog");
  const input = $("rename-input");
  const opener = document.activeElement;
  $("rename-title").textContent = title;
  input.maxLength = maxLength;
  input.value = value;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.onclose = () => {
      dialog.onclose = null;
      restoreFocus(opener, fallback);
      resolve(dialog.returnValue === "save" ? input.value : null);
    };
    dialog.showModal();
    input.focus();
    input.select();
  });
}

/** Copy `text` to the clipboard: the Clipboard API where the page may use it (a secure
    context: HTTPS or loopback), else the selected field's copy command. */
async function copyText(text, field) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      /* refused (no permission): the copy command below */
    }
  }
  field.focus();
  field.select();
  return document.execCommand("copy");
}

/** Show a new key's `value` once, with `intro` saying whose it is. The value leaves the
    page when the dialog closes; resolves then. */
export function showSecret({ intro, value, fallback = null }) {
  const dialog = $("secret-dialog");
  const field = $("secret-value");
  const opener = document.activeElement;
  $("secret-intro").textContent = intro;
  $("secret-copied").textContent = "";
  field.value = value;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.onclose = () => {
      dialog.onclose = null;
      field.value = "";
      $("secret-copied").textContent = "";
      restoreFocus(opener, fallback);
      resolve();
    };
    dialog.showModal();
    field.focus();
    field.select();
  });
}

export function wireDialogs() {
  $("rename-cancel").addEventListener("click", () => $("rename-dialog").close("cancel"));
  $("secret-copy").addEventListener("click", async () => {
    const field = $("secret-value");
    const copied = await copyText(field.value, field);
    $("secret-copied").textContent = copied
      ? "Copied to the clipboard."
      : "Could not copy: select the key and copy it yourself.";
  });
}
