/* The key: entered in the key form, kept in the tab's session storage only, forgotten on
   request or when the server stops taking it. A project's key opens the files view; an
   admin key (it begins with the config's `admin_key_prefix`) opens the administration
   view instead. The other parts of the page hear of it through `onSignIn` (a project's
   key), `onAdminSignIn` (an admin key) and `onSignOut`, and reach the server through
   `api()`. */

import { Api, ApiError } from "./api.js";
import { config } from "./config.js";
import { $ } from "./dom.js";
import { hideBanner, showBanner } from "./messages.js";

const KEY_STORAGE = "openai-files.console.key";

/** What each view is called, and where its skip link leads. */
const VIEWS = {
  files: { title: "Files · openai-files console", skip: ["#files-heading", "Skip to the files"] },
  admin: { title: "Administration · openai-files console", skip: ["#projects-heading", "Skip to the projects"] },
};

const state = {
  api: null, // the Api of the key in use, or null
  signIn: [], // what each part does once a project's key opens the console: fn(usage)
  adminSignIn: [], // what each part does once an admin key opens it: fn(organization)
  signOut: [], // what each part clears when the key is forgotten
};

/** The Api of the key in use, or null when none is. */
export function api() {
  return state.api;
}

export function onSignIn(fn) {
  state.signIn.push(fn);
}

export function onAdminSignIn(fn) {
  state.adminSignIn.push(fn);
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

function showView(name) {
  const view = VIEWS[name];
  document.title = view.title;
  $("skip-link").href = view.skip[0];
  $("skip-link").textContent = view.skip[1];
}

function showKeyPanel(message) {
  $("workspace").hidden = true;
  $("admin").hidden = true;
  $("session").hidden = true;
  showView("files");
  $("key-panel").hidden = false;
  const error = $("key-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("key-input").value = "";
  $("key-input").focus();
}

/** Forget the key and show the key form with `message` (the key was revoked here). */
export function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.api = null;
  // Nothing of the last key's project stays on the page; its uploads stop.
  for (const clear of state.signOut) clear();
  hideBanner();
  showKeyPanel(message);
}

async function openWithKey(key) {
  const candidate = new Api(key);
  const admin = key.startsWith(config.admin_key_prefix);
  let usage;
  try {
    usage = admin ? await candidate.organization() : await candidate.usage();
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
  $("workspace").hidden = admin;
  $("admin").hidden = !admin;
  $("session").hidden = false;
  showView(admin ? "admin" : "files");
  $("tenant").textContent = admin ? `${usage.organization} · admin key` : `${usage.organization} · ${usage.project}`;
  for (const open of admin ? state.adminSignIn : state.signIn) await open(usage);
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
