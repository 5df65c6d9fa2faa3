/* Search by name: the API has no search, so page through the list (the largest pages it
   gives) and keep the files whose name or id holds the query, ignoring case. */

import { config } from "./config.js";

/** The files of `purpose` (all when empty) in `order` whose name or id holds `query`, at
    most the config's `search_matches_max` of them. `onProgress(seen)` before each page;
    `current()` false stops the search (a newer one took over): it then resolves to null.
    Resolves to `{matches, seen, capped}`, `capped` when more files matched than are kept. */
export async function searchByName(api, query, { order, purpose, onProgress, current }) {
  const needle = query.toLowerCase();
  const cap = config.search_matches_max;
  let matches = [];
  let after;
  let seen = 0;
  let capped = false;
  for (;;) {
    onProgress(seen);
    const listing = await api.listFiles({ after, limit: config.list_limit_max, order, purpose });
    seen += listing.data.length;
    for (const file of listing.data) {
      if (file.filename.toLowerCase().includes(needle) || file.id.toLowerCase().includes(needle)) {
        matches.push(file);
      }
    }
    if (!current()) return null;
    if (matches.length >= cap) {
      capped = listing.has_more || matches.length > cap;
      matches = matches.slice(0, cap);
      break;
    }
    if (!listing.has_more || !listing.last_id) break;
    after = listing.last_id;
  }
  return { matches, seen, capped };
}
