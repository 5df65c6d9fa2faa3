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
