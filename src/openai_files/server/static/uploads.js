/* Sending one file: POST /v1/files for a small one, the Uploads API in parallel parts for a
   large one (over the server's console threshold). Parts are `Blob.slice`s, so the tab never
   holds the file: the browser reads each slice from disk as it sends it. The part size, the
   parts sent at once and the tries of each are the config's (config.js). */

import { ApiError } from "./api.js";

const BACKOFF_MS = [500, 1500, 4000];

const MIME = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+$/;

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(new ApiError("Stopped.", { code: "aborted" }));
        },
        { once: true },
      );
    }
  });
}

/** Upload `file` with `purpose`. `onProgress(sent, total)` as bytes leave, `onStep(text)` on
    each stage. Resolves to the file object. */
export async function uploadFile(api, config, file, purpose, { onProgress, onStep, signal }) {
  // Over the threshold, or over what one POST /v1/files may hold: the Uploads API.
  if (file.size > config.upload_threshold_bytes || file.size > config.max_file_bytes) {
    return uploadInParts(api, config, file, purpose, { onProgress, onStep, signal });
  }
  onStep("Uploading");
  const form = new FormData();
  form.append("purpose", purpose);
  form.append("file", file, file.name);
  const result = await api.send("/v1/files", form, {
    onProgress: (loaded) => onProgress(Math.min(loaded, file.size), file.size),
    signal,
  });
  onProgress(file.size, file.size);
  return result;
}

async function uploadInParts(api, config, file, purpose, { onProgress, onStep, signal }) {
  const partBytes = config.part_bytes;
  const count = Math.max(1, Math.ceil(file.size / partBytes));
  onStep(`Creating an upload of ${count} ${count === 1 ? "part" : "parts"}`);
  const upload = await api.createUpload({
    filename: file.name,
    purpose,
    bytes: file.size,
    mime_type: MIME.test(file.type) ? file.type : "application/octet-stream",
  });
  const sent = new Array(count).fill(0);
  const report = () => onProgress(sent.reduce((a, b) => a + b, 0), file.size);
  const partIds = new Array(count);
  let next = 0;
  let done = 0;
  const local = new AbortController();
  const stop = () => local.abort();
  if (signal) signal.addEventListener("abort", stop, { once: true });

  const sendPart = async (index) => {
    const start = index * partBytes;
    const blob = file.slice(start, Math.min(start + partBytes, file.size));
    for (let attempt = 1; ; attempt++) {
      const form = new FormData();
      form.append("data", blob, file.name);
      try {
        const part = await api.send(`/v1/uploads/${encodeURIComponent(upload.id)}/parts`, form, {
          onProgress: (loaded) => {
            sent[index] = Math.min(loaded, blob.size);
            report();
          },
          signal: local.signal,
        });
        sent[index] = blob.size;
        report();
        return part.id;
      } catch (err) {
        sent[index] = 0;
        report();
        if (local.signal.aborted || !err.retryable || attempt >= config.part_attempts) throw err;
        onStep(`Part ${index + 1} failed (${err.message}); retrying`);
        await sleep(BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)], local.signal);
      }
    }
  };

  const worker = async () => {
    while (next < count && !local.signal.aborted) {
      const index = next++;
      partIds[index] = await sendPart(index);
      done++;
      onStep(`Sent ${done} of ${count} parts`);
    }
  };

  try {
    const workers = [];
    for (let i = 0; i < Math.min(config.parallel_parts, count); i++) workers.push(worker());
    // The first failure stops the others (they abort their part at once).
    await Promise.all(workers.map((w) => w.catch((err) => { local.abort(); throw err; })));
    onStep(`Joining ${count} ${count === 1 ? "part" : "parts"}`);
    const completed = await api.completeUpload(upload.id, partIds);
    return completed.file;
  } catch (err) {
    local.abort();
    // A refused or stopped upload gives its parts and reserved bytes back at once.
    try {
      await api.cancelUpload(upload.id);
    } catch {
      /* it expires within the hour anyway */
    }
    throw err;
  } finally {
    if (signal) signal.removeEventListener("abort", stop);
  }
}
