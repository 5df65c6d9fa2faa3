/* The server's API, as the console calls it: /v1 and the console's own routes. Every error
   is an ApiError carrying the message of OpenAI's error envelope. */

export class ApiError extends Error {
  constructor(message, { status = 0, code = null, param = null, retryable = false } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.param = param;
    this.retryable = retryable;
  }
}

/** A status worth retrying: the server is busy or restarting, or the connection broke. */
function retryableStatus(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

/** The ApiError for an answer that is not a success: the envelope's message when there is
    one, else the status line. */
export function errorFrom(status, statusText, bodyText) {
  let message = "";
  let code = null;
  let param = null;
  try {
    const body = JSON.parse(bodyText);
    if (body && body.error && typeof body.error.message === "string") {
      ({ message, code = null, param = null } = body.error);
    }
  } catch {
    /* not JSON: the status line below */
  }
  if (!message) {
    message = `The server answered ${status}${statusText ? " " + statusText : ""}.`;
  }
  return new ApiError(message, { status, code, param, retryable: retryableStatus(status) });
}

function networkError(err) {
  const why = err && err.message ? ` (${err.message})` : "";
  return new ApiError(`Could not reach the server${why}: check that it is running, then retry.`, {
    status: 0,
    retryable: true,
  });
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, ...extra };
  }

  /** One call; resolves to the parsed JSON body (or the Response when `raw`). */
  async request(method, path, { query = null, json = undefined, headers = {}, raw = false, auth = true } = {}) {
    let url = path;
    if (query) {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) {
        // An array is the API's `name[]=a&name[]=b` (the audit log's filters).
        if (Array.isArray(value)) for (const item of value) params.append(name, String(item));
        else if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
      }
      const text = params.toString();
      if (text) url += "?" + text;
    }
    const init = { method, headers: auth ? this.headers(headers) : { ...headers }, cache: "no-store" };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw networkError(err);
    }
    if (!response.ok) {
      throw errorFrom(response.status, response.statusText, await response.text());
    }
    return raw ? response : response.json();
  }

  config() {
    return this.request("GET", "/console/api/config", { auth: false });
  }

  usage() {
    return this.request("GET", "/console/api/usage");
  }

  /** Who an admin key is: `{organization, admin_key_id}`. */
  organization() {
    return this.request("GET", "/console/api/organization");
  }

  listFiles({ after, limit, order, purpose } = {}) {
    return this.request("GET", "/v1/files", { query: { after, limit, order, purpose } });
  }

  getFile(id) {
    return this.request("GET", `/v1/files/${encodeURIComponent(id)}`);
  }

  deleteFile(id) {
    return this.request("DELETE", `/v1/files/${encodeURIComponent(id)}`);
  }

  /** The file's first `bytes` bytes (a Range request), as a Response. */
  head(id, bytes) {
    return this.request("GET", `/v1/files/${encodeURIComponent(id)}/content`, {
      headers: { Range: `bytes=0-${bytes - 1}` },
      raw: true,
    });
  }

  content(id) {
    return this.request("GET", `/v1/files/${encodeURIComponent(id)}/content`, { raw: true });
  }

  downloadLink(fileId) {
    return this.request("POST", "/console/api/download-links", { json: { file_id: fileId } });
  }

  pendingUploads() {
    return this.request("GET", "/v1/uploads", { query: { status: "pending", limit: 100 } });
  }

  createUpload(body) {
    return this.request("POST", "/v1/uploads", { json: body });
  }

  completeUpload(id, partIds) {
    return this.request("POST", `/v1/uploads/${encodeURIComponent(id)}/complete`, {
      json: { part_ids: partIds },
    });
  }

  cancelUpload(id) {
    return this.request("POST", `/v1/uploads/${encodeURIComponent(id)}/cancel`);
  }

  listBatches({ after, limit } = {}) {
    return this.request("GET", "/v1/batches", { query: { after, limit } });
  }

  cancelBatch(id) {
    return this.request("POST", `/v1/batches/${encodeURIComponent(id)}/cancel`);
  }

  // -- the Administration API (an admin key) --

  listProjects({ after, limit, includeArchived = false } = {}) {
    return this.request("GET", "/v1/organization/projects", {
      query: { after, limit, include_archived: includeArchived ? "true" : "false" },
    });
  }

  createProject(name) {
    return this.request("POST", "/v1/organization/projects", { json: { name } });
  }

  renameProject(id, name) {
    return this.request("POST", `/v1/organization/projects/${encodeURIComponent(id)}`, { json: { name } });
  }

  archiveProject(id) {
    return this.request("POST", `/v1/organization/projects/${encodeURIComponent(id)}/archive`);
  }

  listServiceAccounts(projectId, { after, limit } = {}) {
    return this.request("GET", `/v1/organization/projects/${encodeURIComponent(projectId)}/service_accounts`, {
      query: { after, limit },
    });
  }

  createServiceAccount(projectId, name) {
    return this.request("POST", `/v1/organization/projects/${encodeURIComponent(projectId)}/service_accounts`, {
      json: { name },
    });
  }

  deleteServiceAccount(projectId, id) {
    const path = `/v1/organization/projects/${encodeURIComponent(projectId)}/service_accounts/${encodeURIComponent(id)}`;
    return this.request("DELETE", path);
  }

  listProjectKeys(projectId, { after, limit } = {}) {
    return this.request("GET", `/v1/organization/projects/${encodeURIComponent(projectId)}/api_keys`, {
      query: { after, limit },
    });
  }

  deleteProjectKey(projectId, id) {
    const path = `/v1/organization/projects/${encodeURIComponent(projectId)}/api_keys/${encodeURIComponent(id)}`;
    return this.request("DELETE", path);
  }

  listAdminKeys({ after, limit, order } = {}) {
    return this.request("GET", "/v1/organization/admin_api_keys", { query: { after, limit, order } });
  }

  createAdminKey(name) {
    return this.request("POST", "/v1/organization/admin_api_keys", { json: { name } });
  }

  deleteAdminKey(id) {
    return this.request("DELETE", `/v1/organization/admin_api_keys/${encodeURIComponent(id)}`);
  }

  listAuditLogs({ after, limit, eventTypes = [], projectIds = [] } = {}) {
    return this.request("GET", "/v1/organization/audit_logs", {
      query: { after, limit, "event_types[]": eventTypes, "project_ids[]": projectIds },
    });
  }

  /** POST a form with XMLHttpRequest, for its upload progress. `onProgress(loaded)` is
      called as bytes leave; `signal` aborts. Resolves to the JSON body. */
  send(path, form, { onProgress = () => {}, signal = null } = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("Authorization", `Bearer ${this.key}`);
      xhr.responseType = "text";
      xhr.upload.onprogress = (event) => onProgress(event.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            resolve(JSON.parse(xhr.responseText));
          } catch {
            reject(new ApiError("The server's answer was not JSON.", { status: xhr.status }));
          }
        } else {
          reject(errorFrom(xhr.status, xhr.statusText, xhr.responseText));
        }
      };
      xhr.onerror = () => reject(networkError(null));
      xhr.ontimeout = () => reject(networkError({ message: "timed out" }));
      xhr.onabort = () => reject(new ApiError("Stopped.", { code: "aborted" }));
      if (signal) {
        if (signal.aborted) {
          reject(new ApiError("Stopped.", { code: "aborted" }));
          return;
        }
        signal.addEventListener("abort", () => xhr.abort(), { once: true });
      }
      xhr.send(form);
    });
  }
}
