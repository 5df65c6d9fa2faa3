/* The key: entered in the key form, kept in the tab's session storage only, forgotten on
   request or when the server stops taking it. The other parts of the page hear of it through
   `onSignIn` and `onSignOut`, and reach the server through `api()`. */

import { Api, ApiError } from "./api.js";
import { $ } from "./dom.js";
import { hideBanner, showBanner } from "./messages.js";

const KEY_STORAGE = "openai-files.console.key";

const state = {
  api: null, // the Api of the key in use, or null
  signIn: [], // what each part does once a key opens the console: fn(usage)
  signOut: [], // what each part clears when the key is forgotten
};

/** The Api of the key in use, or null when none is. */
export function api() {
  return state.api;
}

export function onSignIn(fn) {
  state.signIn.push(fn);
}

export function onSignOut(fn) {
  state.signOut.push(fn);
}

/** What an error tells the person: the API's own message. A 401 means the key no longer
    works: back to the key form, with the server's words. */
export function handleError(err) {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ApiError && err.status === 401) {
    signOut(message);
    return;
  }
  showBanner(message);
}

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
  for (const clear of state.signOut) clear();
  hideBanner();
  showKeyPanel(message);
}

async function openWithKey(key) {
  const candidate = new Api(key);
  let usage;
  try {
    usage = await candidate.usage();
  } catch (err) {
    // A key the server refuses is forgotten; one it could not check (the server is down)
    // stays for the next try.
    if (err.status === 401 || err.status === 403) sessionStorage.removeItem(KEY_STORAGE);
    showKeyPanel(err.message);
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  state.api = candidate;
  $("key-panel").hidden = true;
  $("key-error").hidden = true;
  $("workspace").hidden = false;
  $("session").hidden = false;
  $("tenant").textContent = `${usage.organization} · ${usage.project}`;
  for (const open of state.signIn) await open(usage);
}

/** Open the console with the tab's key, or show the key form when it has none. */
export async function resume() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) await openWithKey(key);
  else showKeyPanel("");
}

export function wireSession() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (key) openWithKey(key);
  });
  $("sign-out").addEventListener("click", () => signOut(""));
}
