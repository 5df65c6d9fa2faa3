/* The server's settings the console keeps to, read once from GET /console/api/config before a
   key is entered: every limit the console uses comes from there (docs/api.md, "Extensions for
   the console"), none is written in the console's own code. */

import { Api } from "./api.js";

/** The config's fields, once `loadConfig()` has resolved. */
export const config = {};

export async function loadConfig() {
  Object.assign(config, await new Api("").config());
  return config;
}

/** Whether the server serves the file's content: it refuses some purposes (`assistants`,
    `user_data`), and says which in the config. */
export function downloadable(file) {
  return !config.no_download_purposes.includes(file.purpose);
}

/** Whether `text` has the form of a file id, as the server checks it. */
export function isFileId(text) {
  return new RegExp(`^(?:${config.file_id_pattern})$`).test(text);
}
