/* One paged table of the administration view: a page of an Administration API list at a
   time, paged with the API's `after` cursor (Previous goes back through the cursors seen),
   its pager and its status line. An answer to a request older than the latest is not
   shown. */

import { config } from "./config.js";
import { $ } from "./dom.js";
import { api, handleError } from "./session.js";

export class PagedList {
  /** `prefix` names the elements: `<prefix>-body`, `-status`, `-page-text`, and the two
      pager buttons `prev` / `next` (ids). `fetch({after, limit})` asks for a page,
      `render(items)` shows it, `noun` counts it ("project"), `empty()` is the status of an
      empty first page. */
  constructor({ prefix, prev, next, fetch, render, noun, empty }) {
    Object.assign(this, { prefix, fetch, render, noun, empty });
    this.prev = $(prev);
    this.next = $(next);
    this.pages = [undefined]; // the `after` cursor of each page seen
    this.page = 0;
    this.seq = 0;
    this.prev.addEventListener("click", () => this.load(Math.max(0, this.page - 1)));
    this.next.addEventListener("click", () => this.load(this.page + 1));
  }

  setStatus(text) {
    $(`${this.prefix}-status`).textContent = text;
  }

  /** Nothing shown, back to the first page (a newer answer on its way is dropped). */
  clear() {
    this.seq++;
    this.pages = [undefined];
    this.page = 0;
    this.render([]);
    $(`${this.prefix}-page-text`).textContent = "";
    this.prev.disabled = true;
    this.next.disabled = true;
    this.setStatus("");
  }

  /** Show page `index` (the first when not told), as the server has it now. */
  async load(index = 0) {
    if (!api()) return;
    const seq = ++this.seq;
    this.setStatus("Loading…");
    let listing;
    try {
      listing = await this.fetch({ after: this.pages[index], limit: config.page_admin });
    } catch (err) {
      if (seq !== this.seq) return;
      this.setStatus("");
      handleError(err);
      return;
    }
    if (seq !== this.seq) return;
    if (!listing.data.length && index > 0) {
      // The page's last rows went (revoked, archived): show the page before.
      await this.load(index - 1);
      return;
    }
    this.page = index;
    if (listing.has_more && listing.last_id) this.pages[index + 1] = listing.last_id;
    this.pages.length = listing.has_more ? index + 2 : index + 1;
    this.render(listing.data);
    const size = config.page_admin;
    const first = index * size + 1;
    const last = index * size + listing.data.length;
    $(`${this.prefix}-page-text`).textContent = listing.data.length
      ? `Page ${index + 1} · ${this.noun}s ${first}–${last}${listing.has_more ? "" : ` of ${last}`}`
      : "";
    this.prev.disabled = index === 0;
    this.next.disabled = !listing.has_more;
    this.setStatus(listing.data.length ? "" : this.empty());
  }

  /** The page shown, again. */
  reload() {
    return this.load(this.page);
  }
}
