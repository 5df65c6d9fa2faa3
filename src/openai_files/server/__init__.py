"""The openai-files server: an OpenAI-compatible Files API (install the `[server]` extra).

Where things go. A request passes down these layers; a module imports only those below
it, and the leaves at the end (errors, settings, ids) are used by every layer:

    _http.py, _timeouts.py   the connection: bounds on the request line, headers and body,
                             timeouts, the connection cap (below HTTP, above the socket),
                             in uvicorn's parser callbacks, never copies of its methods
      _http_wire.py          what that layer writes (canonical header names, the envelope)
                             and the transport uvicorn is given (held reads, lingering close)
      _granian.py            `--http-server granian`: the app under granian instead, with
                             the bounds granian offers (docs/deploy.md says which differ)
      _malloc.py             glibc's malloc told to keep the buffers a streamed body reuses
    _upload_slots.py         the uploads one API key may stream at once
    _app.py                  the application factory: the lifespan opens the stores, starts
                             the sweeper; error handlers; the request context and access log
    routes/                  one module per API resource (`files.py`, `uploads.py`): parse the
                             request, call the service, render the answer. A new route (or
                             a new resource such as uploads) goes here, and is listed in
                             `_app.py`'s route table. What routes share (the request's
                             owner and service, an upload's slot, a body's announced
                             length, a JSON body) is public in `_common.py`
    console/                 the web console (its page is plain JS in static/): the page's
                             assets, their security headers, signed download links, the
                             console API, and its config: every limit the page keeps to
    objects.py               the API's JSON objects and the query of a listing
    responses.py             a file's bytes as an answer: Range, ETag, HEAD, pathsend
    _multipart.py, _forms.py a multipart body as part events, then as the form's fields and
                             its file's bytes
    _json.py                 JSON as the server reads it: JSON only (no NaN), text only (no
                             lone surrogate); a line's values counted before it is parsed
    auth.py                  API keys: made, hashed, looked up, turned into an Owner
    service.py               the rules of the Files API: tenancy, limits, quota, expiry, the
                             order of writes. A new rule goes here or beside it:
      uploads.py             the rules of the Uploads API (create, parts, cancel, expiry)
      completion.py          an upload's completion, fenced by its lease
      digests.py             the md5 of an upload's parts, computed as they arrive
      upload_errors.py       the Uploads API's errors
      reservations.py        what an upload holds while its bytes arrive (its reservation:
                             reserve, renew, release) and gives back (`remove_bytes`)
      records.py             a finished body's file record; an upload's shown status
      purposes.py            every purpose rule: who may upload and download, the size,
                             the name, the default expiry, the validator
      validation.py          the content check of a file, as its bytes stream in, and the
                             one policy that feeds it (off the event loop, in pieces)
      batch_input.py         a batch input file checked as OpenAI checks it at a batch's
                             creation, as it streams, and the index of its requests
      sweep.py               housekeeping: what expiry, crashes and failures left behind
    _framing.py              the room a multipart form takes around its file (light: the
                             service reads it too)
    metrics.py               what `/metrics` counts
    readiness.py             `/readyz`: whether the stores answer now, checked at most once a
                             second and each within a bounded time (`routes/health.py`
                             serves it, and `/healthz`, liveness)
    stores/                  where rows and bytes live, behind two protocols (`base.py`):
        base.py              MetadataStore and BlobStore, each method's contract
        _records.py, _errors.py  the rows as records; what a store raises
        _sql.py              the one SQL source: the metadata store's methods, each a plan
          _sql_schema.py     the schema of each version (a new table or column is a new
                             step of MIGRATIONS), rows as records
          _sql_dialect.py    what differs between the databases; how a plan runs
          _sql_plans.py, _sql_upload_plans.py  the plans: queries and their logic
        sqlite.py, postgres.py  the drivers that run _sql.py on each database
        local.py, s3.py      the blob stores; s3.py's parts:
          _manifest.py       an upload's parts as one file (both stores): keys, reads
          _s3_writer.py      one PUT, or a multipart upload that obstore streams
          _s3_parts.py, _s3_compose.py  compose by copy: its planner, its requests
          _s3_reconcile.py   aborts the multipart uploads a killed replica left
          _s3_api.py, _sigv4.py  the S3 requests obstore lacks, and their signature
          _s3_check.py, _s3_errors.py  credentials and the start check; errors told
        cached.py            a row cache for a database this process alone writes
        _urls.py             a store URL without its password, for messages and logs
        __init__.py          the registry: a URL scheme names the backend. A new backend
                             implements a protocol of base.py, passes the conformance suite
                             of `openai_files.testing`, and is registered here
    errors.py                every error the API answers, in OpenAI's envelope
    settings.py              every setting: its default, flag, environment variable, check;
                             and every fixed limit, as a named constant
    ids.py                   every id the server makes (file, upload, part, reservation)
                             and the shape each must have

Example:
    >>> from openai_files.server import Settings, create_app
    >>> app = create_app(Settings(data_dir=Path("./data")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from ._app import create_app

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # The app (and Starlette with it) is imported on first use, so that the settings, and
    # the `openai-files` command built on them, load without the [server] extra.
    if name == "create_app":
        from ._app import create_app

        return create_app
    raise AttributeError(name)
