/* The banner at the top of the page: an error the person should see, until dismissed. */

import { $ } from "./dom.js";

export function showBanner(message) {
  $("banner-text").textContent = message;
  $("banner").hidden = false;
}

export function hideBanner() {
  $("banner").hidden = true;
  $("banner-text").textContent = "";
}

export function wireMessages() {
  $("banner-close").addEventListener("click", hideBanner);
}
