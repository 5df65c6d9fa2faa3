/* The console: plain modern JavaScript modules, no build step, no library. It is a client of
   the server's public /v1 API, plus the console's own routes (config, usage, download links).

   Each part of the page is a module with its own state, wired here:
     session.js   the key: the key form, sign in and out, the Api in use, errors
     usage.js     the usage panel and the pending uploads
     files.js     the files table: pages, order, purpose, search (search.js), selection;
                  its rows' actions: preview.js, download.js, delete.js
     queue.js     the upload queue; uploads.js sends one file
     batches.js   the batches view: pages, progress, polling while one runs; cancel.js
   An admin key opens the administration view instead, of the Administration API:
     projects.js  the projects: create, rename, archive, open one (project.js: its service
                  accounts and keys)
     adminkeys.js the admin keys: create, revoke
     audit.js     the audit log: pages, filters
   with pages.js (a paged table) and ask.js (its dialogs: confirm, rename, a new key shown
   once). config.js holds the server's settings, every limit the console keeps to. */

import { wireAdminKeys } from "./adminkeys.js";
import { wireDialogs } from "./ask.js";
import { wireAudit } from "./audit.js";
import { wireBatches } from "./batches.js";
import { loadConfig } from "./config.js";
import { wireFiles } from "./files.js";
import { showBanner, wireMessages } from "./messages.js";
import { wireProject } from "./project.js";
import { wireProjects } from "./projects.js";
import { wireQueue } from "./queue.js";
import { resume, wireSession } from "./session.js";
import { wireUsage } from "./usage.js";

async function boot() {
  wireMessages();
  try {
    await loadConfig();
  } catch (err) {
    showBanner(`The console's settings could not be read: ${err.message}`);
    return;
  }
  wireSession();
  // In this order when a key opens the console: the usage panel, the files, the batches.
  wireUsage();
  wireFiles();
  wireBatches();
  wireQueue();
  // When an admin key opens it: the projects, the admin keys, the audit log.
  wireDialogs();
  wireProject();
  wireProjects();
  wireAdminKeys();
  wireAudit();
  await resume();
}

boot();
