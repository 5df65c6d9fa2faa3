/* How sizes and times read in the console. */

const UNITS = ["KiB", "MiB", "GiB", "TiB"];

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes;
  let unit = "B";
  for (const next of UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  const digits = value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${unit}`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** Unix seconds as a local "2026-11-27 07:44". */
export function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The same, to the second and with the zone, for a tooltip. */
export function formatTimeFull(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return new Date(seconds * 1000).toString();
}

export function plural(n, one, many = one + "s") {
  return `${n} ${n === 1 ? one : many}`;
}

/* Characters that do not show, or change how what follows shows: controls, format
 * characters (the bidirectional overrides and isolates among them, which make
 * "evil\u202etxt.exe" read "evilexe.txt"), line and paragraph separators, and lone
 * surrogates. The joiners U+200C and U+200D stay: scripts and emoji need them. */
const HIDDEN = /(?![\u200c\u200d])[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/gu;

/** A name as shown to people: each such character written as its escape ("\u202e"), as
 * the CLI shows it. The name itself (stored, downloaded as) is left as it was sent. */
export function shownName(name) {
  return String(name).replace(HIDDEN, (ch) => {
    const code = ch.codePointAt(0);
    return code > 0xffff ? `\\U${code.toString(16).padStart(8, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}
