"""Every server setting, its default, its flag and its environment variable, in one place.

A setting is read, in order of precedence, from the `openai-files serve` flag, the
environment variable `OPENAI_FILES_<NAME>`, then the default below. README lists them all
(a test keeps that list complete).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MiB = 1024 * 1024
GiB = 1024 * MiB

ENV_PREFIX = "OPENAI_FILES_"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = "./data"
#: 512 MB per file, as OpenAI documents (536,870,912 bytes).
DEFAULT_MAX_FILE_BYTES = 512 * MiB
#: 100 GB per organization, as the seed documents.
DEFAULT_ORG_QUOTA_BYTES = 100 * GiB
#: An upload of the Uploads API holds at most 8 GB, in parts of at most 64 MB, as OpenAI's.
DEFAULT_MAX_UPLOAD_BYTES = 8 * GiB
DEFAULT_MAX_PART_BYTES = 64 * MiB
#: Pending uploads one project may have at once: one project cannot fill the database with
#: uploads it never completes, nor hold its organization's quota with them.
DEFAULT_MAX_PENDING_UPLOADS = 100
#: Finished uploads (completed, cancelled, expired) are kept this long after their hour
#: ends, then the sweeper deletes their rows.
DEFAULT_UPLOAD_RETENTION_SECONDS = 24 * 3600.0
#: Batch input files are at most 200 MB.
DEFAULT_MAX_BATCH_FILE_BYTES = 200 * MiB
#: Content validation (`validation.py`): the longest JSON line accepted (ours). A line is
#: held whole to be parsed, so this bounds the memory of a validation.
MAX_LINE_BYTES = 64 * MiB
#: The most JSON values (keys count too) a line may hold (ours). A parsed value can take 25
#: times its text (`{}`: 2 bytes, 64 as a dict), and the parse holds the interpreter: this
#: bounds both, to about 100 MB and 0.1 s.
MAX_LINE_VALUES = 1_000_000
#: OpenAI's Batch API: at most 50,000 requests and 200 MB per input file.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200 * MiB
#: `GET /v1/batches`: a page holds 20 batches by default, at most 100 (OpenAI's).
BATCH_LIST_LIMIT_DEFAULT = 20
BATCH_LIST_LIMIT_MAX = 100
#: OpenAI's metadata (of a batch): at most 16 pairs, keys of 64 characters, values of 512.
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512
#: Batches one project may have that have not ended (validating, in progress, finalizing,
#: cancelling): each holds a database row per request of its input until it ends.
DEFAULT_MAX_ACTIVE_BATCHES = 100
#: A batch worker's lease on a batch it validates or finalizes, and on each request it
#: sends, lasts this long unless renewed (every third of it): a worker that died has its
#: work taken over by another this long after its last renewal (`--batch-lease-seconds`).
#: Leases end on whole seconds: the shortest allowed keeps a renewal well inside each.
BATCH_LEASE_SECONDS = 30
BATCH_LEASE_MIN_SECONDS = 3
#: An engine's answer longer than this is made into its output line in a worker thread (a
#: 16 MiB answer takes a quarter of a second to parse: not on the event loop).
BATCH_PARSE_INLINE_BYTES = 256 * 1024
#: Batches one worker validates at once (each holds the line being checked: up to 64 MiB).
BATCH_MAX_VALIDATIONS = 2
#: How often a batch worker looks for new work when it has nothing to wake it.
BATCH_POLL_SECONDS = 0.5
#: A worker claims at most this many requests of a batch in one transaction (it keeps up
#: to twice a batch's share of the slots claimed ahead: `BatchRunner._claim_ahead`).
BATCH_CLAIM_MAX = 128
#: Results are stored in groups of at most this many: a group is written as soon as the
#: one before it has been (those that arrive meanwhile make the next), after waiting this
#: long for company. A result's request keeps its slot until it is stored, so a wait costs
#: throughput: 10 ms made row 10 (10,000 requests, a 20 ms engine) 4-15% slower.
BATCH_RESULT_GROUP = 256
BATCH_RESULT_WAIT_SECONDS = 0.0
#: Finalizing reads a batch's results this many rows at a time, and at most this many bytes
#: of them (one row at least): memory holds one page, not the answers of many large ones.
#: Pages of 64 made a 10,000-line batch's finalizing 156 pages of two reads each (0.3 s).
BATCH_RESULT_PAGE = 1000
BATCH_RESULT_PAGE_BYTES = 8 * MiB
#: The bodies a worker holds (claimed, and being sent) add up to at most this many bytes
#: (one body alone may pass it): 64 requests of 64 MiB lines would hold 4 GiB.
BATCH_BODY_BUDGET_BYTES = 256 * MiB
#: The most batches a worker looks at in one turn (the oldest first).
BATCH_SCAN_LIMIT = 1000
#: Validation stores a batch's requests this many rows per transaction.
BATCH_INDEX_PAGE = 1000
#: A run of requests whose bodies lie close together in the input file is read in one
#: range request when the run spans at most this many bytes.
BATCH_READ_SPAN_BYTES = 4 * MiB
#: The most problems the check of a batch input file lists (`batch_input.py`; ours): they
#: travel in the failed batch's object (`errors.data`), in every retrieve and every page of
#: a listing, so a file with a bad line in each of its 50,000 keeps 100 (about 20 KB) and
#: counts the rest.
BATCH_MAX_ERRORS = 100
#: The engines batches run against (batch_engine.py): requests one server process sends
#: at once to all its engines, and of one batch; how long one attempt may take; how many
#: times a request is retried (429, 5xx, no answer) before its last answer is final.
DEFAULT_BATCH_CONCURRENCY = 64
#: A batch alone may take every slot: fairness between batches comes from the worker, which
#: gives each free slot to the project, then the batch, with the fewest requests running
#: (batch_runner.py), so a new batch gets its share as soon as slots free. A lower cap
#: keeps one batch from the whole engine even then.
DEFAULT_BATCH_CONCURRENCY_PER_BATCH = DEFAULT_BATCH_CONCURRENCY
DEFAULT_BATCH_REQUEST_TIMEOUT_SECONDS = 600.0
DEFAULT_BATCH_MAX_RETRIES = 5
#: Retries wait a random time (full jitter) under base * 2**(retry - 1), at most the cap,
#: and never less than the engine's Retry-After, itself taken as at most its own cap.
DEFAULT_BATCH_RETRY_BASE_SECONDS = 0.5
BATCH_RETRY_CAP_SECONDS = 60.0
BATCH_RETRY_AFTER_MAX_SECONDS = 300.0
#: The largest engine answer read (streamed; a longer one is the error response_too_large).
BATCH_MAX_RESPONSE_BYTES = 16 * MiB
#: Opening a connection to an engine may take this long (at most the request timeout).
BATCH_CONNECT_TIMEOUT_SECONDS = 10.0
#: An idle connection to an engine is dropped after this long: under the 5 s that common
#: servers (uvicorn, nginx's default 75 s aside) keep one, so that a request is not sent on
#: a connection the engine is closing.
BATCH_KEEPALIVE_SECONDS = 4.0
#: Fine-tuning needs at least this many examples (OpenAI's minimum).
FINE_TUNE_MIN_EXAMPLES = 10
#: A line is counted, tokenized and its strings skipped this many bytes at a time: no one
#: call holds the interpreter long (20 ms at most; the event loop runs between).
VALIDATION_WINDOW_BYTES = 16 * 1024
#: Batch files expire 30 days after creation unless the upload says otherwise.
BATCH_DEFAULT_EXPIRES_SECONDS = 30 * 24 * 3600
EXPIRES_AFTER_MIN_SECONDS = 3600
EXPIRES_AFTER_MAX_SECONDS = 30 * 24 * 3600
LIST_LIMIT_MIN = 1
LIST_LIMIT_MAX = 10_000
LIST_LIMIT_DEFAULT = 10_000
#: A listing of more files is read and sent in batches of this many (memory: one batch).
LIST_BATCH = 1000
#: `GET /v1/uploads` (ours): how many uploads a page holds by default and at most.
UPLOAD_LIST_LIMIT_DEFAULT = 100
UPLOAD_LIST_LIMIT_MAX = 1000
#: The longest file name an upload may declare (as most file systems allow), and the longest
#: media type a part may declare (kept, else `application/octet-stream`).
MAX_FILENAME_LENGTH = 255
MAX_MEDIA_TYPE_LENGTH = 255
#: Largest JSON body: a completion of 10,000 parts names about 300 KB of ids.
MAX_JSON_BYTES = 1024 * 1024
#: An upload may be completed within an hour of its creation, as OpenAI's.
UPLOAD_TTL_SECONDS = 3600
#: The sweeper expires an upload this long after its `expires_at` (clients see it expired
#: at once): a completion begun late, joining up to 8 GB, keeps its parts.
UPLOAD_SWEEP_MARGIN_SECONDS = 600
#: A completion whose lease (`completing_since`) was last renewed this long ago is taken
#: for dead and may be taken over; the sweeper's margin assumes no completion runs longer,
#: so the two agree (a constant, not a setting).
COMPLETION_TAKEOVER_SECONDS = UPLOAD_SWEEP_MARGIN_SECONDS
#: How often a running completion renews its lease (one that runs is not taken over).
COMPLETION_RENEW_SECONDS = 60
#: The sweeper takes rows and keys this many at a time.
SWEEP_BATCH = 500
#: How many uploads' running md5s a server keeps (an md5 state is ~0.2 KB; the oldest go).
RUNNING_DIGESTS = 1024
DEFAULT_SWEEP_INTERVAL_SECONDS = 60.0
#: Bytes that no row names are removed only once older than this (a live upload
#: writes its bytes before its row).
DEFAULT_SWEEP_GRACE_SECONDS = 900.0
#: An upload's quota reservation is a lease, renewed while bytes arrive; the reservation of
#: an upload whose server died lapses this long after its last renewal.
DEFAULT_RESERVATION_TTL_SECONDS = 300.0
#: A checked API key is trusted this long without a database lookup.
DEFAULT_KEY_CACHE_SECONDS = 1.0
#: The longest `--key-cache-seconds`: how long a key revoked on one replica may still work
#: on another.
KEY_CACHE_MAX_SECONDS = 60.0
#: Room for the multipart framing and small fields around the file part.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: Most parts in one multipart upload: OpenAI's form has four; thousands of tiny fields
#: would cost parsing time that no byte limit bounds.
DEFAULT_MAX_FORM_PARTS = 100
#: Largest request line plus headers (a 414 or 431 beyond it).
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
#: A client has this long from connecting (or from a request's first byte) to send the
#: request line and headers.
DEFAULT_HEADER_TIMEOUT_SECONDS = 30.0
#: An upload whose body sends no byte for this long ends (a 408), its quota and temp file
#: freed; shorter than the sweep grace, so a stalled upload ends before its bytes age.
DEFAULT_BODY_IDLE_TIMEOUT_SECONDS = 60.0
#: A request body must arrive at this rate at least, averaged over each window of the
#: time the server waits for it (as Apache's mod_reqtimeout MinRate): one byte every few
#: seconds never trips the idle timeout, yet holds a connection for hours.
DEFAULT_MIN_BODY_BYTES_PER_SECOND = 1024
DEFAULT_BODY_RATE_WINDOW_SECONDS = 60.0
#: Uploads (POST /v1/files, POST /v1/uploads/{id}/parts) one API key may stream at once
#: on one server process; the next is a 429. The client sends 4 parts at a time, the
#: console 8 at most.
DEFAULT_MAX_UPLOADS_PER_KEY = 16
#: An idle keep-alive connection is closed after this long.
DEFAULT_KEEP_ALIVE_TIMEOUT_SECONDS = 15.0
#: Open connections one server process accepts; the next is answered 503 and closed.
DEFAULT_MAX_CONNECTIONS = 1000
#: File rows the embedded default keeps in memory for lookups by id (stores/cached.py).
DEFAULT_FILE_CACHE_ROWS = 50_000
#: PostgreSQL connections one server process keeps open, and opens at most.
DEFAULT_DATABASE_POOL_MIN_SIZE = 1
DEFAULT_DATABASE_POOL_MAX_SIZE = 10
#: How long opening a PostgreSQL connection may take.
DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS = 10.0
#: S3 refuses a multipart part under 5 MiB (but the last) or over 5 GiB, and an upload of
#: more than 10,000 parts: protocol limits, not settings.
S3_MIN_PART_BYTES = 5 * MiB
S3_MAX_PART_BYTES = 5 * GiB
S3_MAX_PARTS = 10_000
#: `GET /readyz` waits this long for each store (the database, the blob store) before it
#: answers 503: a store that hangs makes a replica unready in bounded time, not a probe
#: that hangs. Under the few seconds an orchestrator's probe waits (Kubernetes: 1 s by
#: default, so give the probe more; docs/deploy.md).
DEFAULT_READY_TIMEOUT_SECONDS = 2.0
#: A `/readyz` answer stands for this long after its check ended: probes, however many,
#: check the stores at most once in that time (concurrent ones share one check).
READY_CACHE_SECONDS = 1.0
#: `batch-worker` touches its --heartbeat-file this often while its event loop runs: the
#: container's health check (deploy/healthcheck.py, the image's HEALTHCHECK) finds it alive
#: while the file is younger than three of these, since it serves no /healthz to ask.
HEARTBEAT_SECONDS = 10.0
#: Size of one S3 multipart part, and of the buffer that decides between PUT and multipart.
DEFAULT_S3_PART_BYTES = 8 * MiB
#: Parts of one upload sent at once; with the buffer this bounds memory per upload (~32 MiB).
DEFAULT_S3_CONCURRENT_PARTS = 3
#: How long the S3 start check waits for its one request.
DEFAULT_S3_CHECK_TIMEOUT_SECONDS = 5.0
#: Memory one part of the Uploads API may hold while it streams to the store (on S3: its
#: smallest parts, one at a time): an upload's parts arrive side by side, and 4 at once
#: stay well under 64 MiB.
UPLOAD_PART_BUFFER_BYTES = 2 * S3_MIN_PART_BYTES
#: Largest accepted value of a non-file form field.
MAX_FIELD_BYTES = 64 * 1024
#: Size of the chunks written to and read from storage.
IO_CHUNK_BYTES = 1 * MiB
#: `openai-files backup` and `restore`: objects copied at once (each holds a chunk, or on
#: S3 a writer's buffer of BACKUP_BUFFER_BYTES: memory stays bounded whatever the sizes).
BACKUP_CONCURRENT_OBJECTS = 4
BACKUP_BUFFER_BYTES = UPLOAD_PART_BUFFER_BYTES
#: A backup whose blobs are deleted while it copies them takes a new snapshot and copies
#: what that one needs; it gives up after this many snapshots (a deployment deleting
#: faster than the backup copies).
BACKUP_MAX_SNAPSHOTS = 20
#: A validator is fed at most this many bytes per call in a worker thread.
VALIDATION_PIECE_BYTES = IO_CHUNK_BYTES
#: Who may read /metrics (`--metrics`).
METRICS_MODES = ("loopback", "token", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: The HTTP server that runs the app (`--http-server`): uvicorn with the connection bounds
#: of server/_http.py, or granian (the `granian` extra), which sends files zero-copy.
HTTP_SERVERS = ("uvicorn", "granian")
OPENAI_VERSION = "2020-10-01"
#: Files larger than this go from the web console through the Uploads API in parallel
#: parts: above one part's size, parts in parallel go faster and a failed one is retried alone.
DEFAULT_CONSOLE_UPLOAD_THRESHOLD_BYTES = 64 * MiB
#: The web console's own bounds (it reads them from /console/api/config, with the limits
#: above): files on one page of its table; matches a search by name shows at most; the
#: head of a text file its preview reads, and the lines it shows of it; the largest image
#: it previews (held whole in the tab); files it uploads at once, and parts of one upload
#: it sends at once (together at most --max-uploads-per-key); tries of one part; deletes
#: it sends at once; batches on one page of its batches view (at most
#: BATCH_LIST_LIMIT_MAX); how often the view asks again while a batch shown runs; rows on
#: one page of each table of its administration view (at most ADMIN_LIST_LIMIT_MAX); the
#: projects its audit log's project filter offers at most (read a full page at a time).
CONSOLE_PAGE_FILES = 100
CONSOLE_SEARCH_MATCHES_MAX = 1000
CONSOLE_PREVIEW_BYTES = 64 * 1024
CONSOLE_PREVIEW_LINES = 20
CONSOLE_PREVIEW_IMAGE_MAX_BYTES = 20 * MiB
CONSOLE_PARALLEL_FILES = 2
CONSOLE_PARALLEL_PARTS = 4
CONSOLE_PART_ATTEMPTS = 4
CONSOLE_PARALLEL_DELETES = 4
CONSOLE_PAGE_BATCHES = 20
CONSOLE_BATCH_POLL_SECONDS = 2.0
CONSOLE_PAGE_ADMIN = 20
CONSOLE_AUDIT_PROJECTS_MAX = 1000
DEFAULT_ORG_ID = "org-default"
DEFAULT_PROJECT_ID = "proj_default"
#: The Administration API's listings: `limit` 1 to 100, 20 unless told (OpenAI's).
ADMIN_LIST_LIMIT_DEFAULT = 20
ADMIN_LIST_LIMIT_MAX = 100
#: The longest name of a project, service account or key (ours: OpenAI states none).
ADMIN_NAME_MAX_CHARS = 256
#: The Administration API's limits per organization (projects, admin keys) and per
#: project (service accounts), so that one admin key cannot make rows without end.
DEFAULT_MAX_PROJECTS_PER_ORG = 1000
DEFAULT_MAX_SERVICE_ACCOUNTS_PER_PROJECT = 100
DEFAULT_MAX_ADMIN_KEYS_PER_ORG = 50
#: An admin key's `expires_in_seconds`: 1 to a year (OpenAI's).
ADMIN_KEY_EXPIRES_MAX_SECONDS = 365 * 24 * 3600
#: The name of a key made without one (the name OpenAI gives a service account's key).
DEFAULT_KEY_NAME = "Secret key"
#: How long the audit log keeps an event (`--audit-retention-days`); then the sweeper
#: removes it, SWEEP_BATCH at a time.
DEFAULT_AUDIT_RETENTION_DAYS = 365
#: The most values one filter of the audit log's listing takes (`project_ids[]`, ...).
AUDIT_FILTER_MAX_VALUES = 100


def _field(default: Any, help: str, *, shown: str | None = None, metavar: str | None = None) -> Any:
    """A setting; `shown` is its default as `--help` and README write it, when the value
    itself does not say it well (an empty string that means "derived from --data-dir");
    `metavar` names its value in `--help` when the name's last word does not."""
    return dataclasses.field(
        default=default, metadata={"help": help, "shown": shown, "metavar": metavar}
    )


def metavar(field: dataclasses.Field[Any]) -> str:
    """How `--help` names a setting's value: BYTES for --max-file-bytes."""
    return str(field.metadata.get("metavar") or field.name.split("_")[-1].upper())


@dataclasses.dataclass(frozen=True)
class Settings:
    """Configuration of one server process.

    Example:
        >>> Settings(data_dir=Path("/tmp/files"), port=0).port
        0
    """

    data_dir: Path = _field(  # noqa: RUF009
        Path(DEFAULT_DATA_DIR), "folder for the database and the bytes", shown=DEFAULT_DATA_DIR
    )
    database: str = _field("", "metadata store URL", shown="sqlite:///<data-dir>/files.sqlite3")
    storage: str = _field("", "blob store URL", shown="file:///<data-dir>")
    host: str = _field(DEFAULT_HOST, "address to bind (loopback unless told otherwise)")
    port: int = _field(DEFAULT_PORT, "TCP port to listen on (0: any free port)")
    max_file_bytes: int = _field(DEFAULT_MAX_FILE_BYTES, "largest file accepted, in bytes")
    max_batch_file_bytes: int = _field(
        DEFAULT_MAX_BATCH_FILE_BYTES, "largest file of purpose batch, in bytes"
    )
    max_upload_bytes: int = _field(
        DEFAULT_MAX_UPLOAD_BYTES, "largest file sent through the Uploads API, in bytes"
    )
    max_part_bytes: int = _field(
        DEFAULT_MAX_PART_BYTES, "largest part of an upload (Uploads API), in bytes"
    )
    org_quota_bytes: int = _field(
        DEFAULT_ORG_QUOTA_BYTES, "total bytes of files one organization may store"
    )
    max_pending_uploads: int = _field(
        DEFAULT_MAX_PENDING_UPLOADS,
        "pending uploads (Uploads API) one project may have at once; another is refused "
        "until one is completed, cancelled or expires",
    )
    batch_runner: bool = _field(
        True,
        "run batches in this server process when an engine is set; with --no-batch-runner "
        "only `openai-files batch-worker` processes run them",
    )
    max_active_batches: int = _field(
        DEFAULT_MAX_ACTIVE_BATCHES,
        "batches one project may have that have not ended; another is a 429 until one ends",
    )
    max_projects_per_org: int = _field(
        DEFAULT_MAX_PROJECTS_PER_ORG,
        "projects one organization may have, archived ones too; another is a 400 "
        "(Administration API)",
    )
    max_service_accounts_per_project: int = _field(
        DEFAULT_MAX_SERVICE_ACCOUNTS_PER_PROJECT,
        "service accounts one project may have; another is a 400 until one is deleted",
    )
    max_admin_keys_per_org: int = _field(
        DEFAULT_MAX_ADMIN_KEYS_PER_ORG,
        "admin keys one organization may have that are not deleted (expired ones count); "
        "another is a 400 until one is deleted",
    )
    batch_upstream_url: str = _field(
        "",
        "base URL of the OpenAI-compatible engine that runs batches, ending in /v1 "
        "(http://host:8000/v1); without one (nor --batch-routes-file), POST /v1/batches is "
        "refused",
        shown="none",
        metavar="URL",
    )
    batch_upstream_api_key: str = _field(
        "",
        "API key sent to --batch-upstream-url as a Bearer token (prefer the environment "
        "variable to the flag, which other users can see)",
        shown="none",
    )
    batch_routes_file: str = _field(
        "",
        'a JSON or TOML file that routes models to engines: {"models": {MODEL: {"url": '
        '..., "api_key": ...}}, "default": {...}}; a model it does not name goes to its '
        "default, else to --batch-upstream-url",
        shown="none",
    )
    batch_concurrency: int = _field(
        DEFAULT_BATCH_CONCURRENCY,
        "batch requests one server process sends to its engines at once, in all",
        metavar="REQUESTS",
    )
    batch_concurrency_per_batch: int = _field(
        DEFAULT_BATCH_CONCURRENCY_PER_BATCH,
        "requests of one batch one server process sends at once",
        metavar="REQUESTS",
    )
    batch_lease_seconds: int = _field(
        BATCH_LEASE_SECONDS,
        "a batch worker's lease on the work it claimed, renewed every third of it: work of "
        "a worker that died (killed, its host lost) is taken over this long after",
    )
    batch_request_timeout_seconds: float = _field(
        DEFAULT_BATCH_REQUEST_TIMEOUT_SECONDS,
        "how long one attempt of a batch request may take, answer read whole (then it is retried)",
    )
    batch_max_retries: int = _field(
        DEFAULT_BATCH_MAX_RETRIES,
        "times a batch request is retried after a 429, a 5xx, no answer or a timeout; then "
        "its last answer is its result",
    )
    batch_retry_base_seconds: float = _field(
        DEFAULT_BATCH_RETRY_BASE_SECONDS,
        f"a batch request's first retry waits up to this long (at random), each next one "
        f"twice as long, at most {BATCH_RETRY_CAP_SECONDS:g}; never less than the engine's "
        f"Retry-After (at most {BATCH_RETRY_AFTER_MAX_SECONDS:g})",
    )
    max_pending_upload_bytes: int | None = _field(
        None,
        "bytes one project's pending uploads may reserve together (their declared bytes), "
        "so that one project cannot hold its whole organization's quota",
        shown="half of --org-quota-bytes",
    )
    upload_retention_seconds: float = _field(
        DEFAULT_UPLOAD_RETENTION_SECONDS,
        "how long a completed, cancelled or expired upload stays known (listed, and "
        "answered with its status) after its hour ends; then the sweeper deletes its row "
        "and it is a 404 (its file stays)",
    )
    audit_retention_days: int = _field(
        DEFAULT_AUDIT_RETENTION_DAYS,
        "how long the audit log keeps an event (GET /v1/organization/audit_logs); then the "
        "sweeper removes it",
    )
    allow_download_all_purposes: bool = _field(
        False, "allow downloading assistants and user_data files (OpenAI refuses)"
    )
    strict_validation: bool = _field(
        False,
        "refuse at upload what a batch or fine-tuning job would refuse later (request and "
        "example shapes, image types), not only lines that are not JSON objects, as OpenAI",
    )
    sweep_interval_seconds: float = _field(
        DEFAULT_SWEEP_INTERVAL_SECONDS,
        "how often expired files are removed (orphan bytes: once a third of the grace)",
    )
    sweep_grace_seconds: float = _field(
        DEFAULT_SWEEP_GRACE_SECONDS, "age before bytes that no row names count as orphans"
    )
    key_cache_seconds: float = _field(
        DEFAULT_KEY_CACHE_SECONDS,
        "how long a checked API key is trusted without a lookup (a revoked key stops "
        "working within it; 0: look up every request; at most 60)",
    )
    reservation_ttl_seconds: float = _field(
        DEFAULT_RESERVATION_TTL_SECONDS,
        "lease of an upload's quota reservation, renewed while it streams",
    )
    max_form_parts: int = _field(
        DEFAULT_MAX_FORM_PARTS,
        "most parts (file and fields) one multipart upload may have; more is a 400",
    )
    max_header_bytes: int = _field(
        DEFAULT_MAX_HEADER_BYTES,
        "largest request line plus headers, in bytes (a longer URL is a 414, longer headers a 431)",
    )
    header_timeout_seconds: float = _field(
        DEFAULT_HEADER_TIMEOUT_SECONDS,
        "time a client has to send a request's line and headers (then a 408 and the "
        "connection closed)",
    )
    body_idle_timeout_seconds: float = _field(
        DEFAULT_BODY_IDLE_TIMEOUT_SECONDS,
        "an upload that sends no byte for this long ends with a 408, its quota and temp "
        "file freed (shorter than --sweep-grace-seconds; 0: never)",
    )
    min_body_bytes_per_second: int = _field(
        DEFAULT_MIN_BODY_BYTES_PER_SECOND,
        "a request body slower than this, averaged over --body-rate-window-seconds of "
        "waiting for it, ends with a 408, its quota and temp file freed (0: no minimum)",
        metavar="BYTES",
    )
    body_rate_window_seconds: float = _field(
        DEFAULT_BODY_RATE_WINDOW_SECONDS,
        "the window over which --min-body-bytes-per-second is averaged (the time the server "
        "waits for the body; not the time it spends storing it)",
    )
    max_uploads_per_key: int = _field(
        DEFAULT_MAX_UPLOADS_PER_KEY,
        "uploads (POST /v1/files, POST /v1/uploads/{id}/parts) one API key may stream at "
        "once on one server process; the next is a 429 (0: no limit)",
        metavar="UPLOADS",
    )
    keep_alive_timeout_seconds: float = _field(
        DEFAULT_KEEP_ALIVE_TIMEOUT_SECONDS, "an idle keep-alive connection is closed after it"
    )
    max_connections: int = _field(
        DEFAULT_MAX_CONNECTIONS,
        "open connections accepted at once; the next is answered 503 and closed",
    )
    file_cache_rows: int = _field(
        DEFAULT_FILE_CACHE_ROWS,
        "file rows kept in memory for lookups by id, on the embedded default only (SQLite "
        "in the data folder; 0: no cache)",
    )
    database_pool_min_size: int = _field(
        DEFAULT_DATABASE_POOL_MIN_SIZE,
        "PostgreSQL: connections each server process keeps open",
    )
    database_pool_max_size: int = _field(
        DEFAULT_DATABASE_POOL_MAX_SIZE,
        "PostgreSQL: most connections each server process opens (replicas times this must "
        "stay under the database's max_connections)",
    )
    database_connect_timeout_seconds: float = _field(
        DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS,
        "PostgreSQL: how long opening a connection may take",
    )
    storage_part_bytes: int = _field(
        DEFAULT_S3_PART_BYTES,
        "S3: size of one part of a multipart upload, in bytes (a smaller file is one PUT); "
        "5 MB to 5 GB, S3's limits, and at least --max-file-bytes / 10000",
    )
    storage_concurrent_parts: int = _field(
        DEFAULT_S3_CONCURRENT_PARTS,
        "S3: parts of one upload sent at once (an upload buffers about this plus one "
        "times --storage-part-bytes)",
    )
    storage_check_timeout_seconds: float = _field(
        DEFAULT_S3_CHECK_TIMEOUT_SECONDS,
        "S3: how long the start check waits for the bucket's answer",
    )
    ready_timeout_seconds: float = _field(
        DEFAULT_READY_TIMEOUT_SECONDS,
        "how long GET /readyz waits for each store (the database, the blob store) before it "
        "answers 503",
    )
    heartbeat_file: str = _field(
        "",
        "batch-worker only: a file it touches every 10 s while it runs and removes when it "
        "stops, for a health check that has no /healthz to ask (the image sets it)",
        shown="none",
    )
    metrics: str = _field(
        "loopback",
        "who may read /metrics: loopback (requests from this machine only), token (any "
        "client that sends --metrics-token as a Bearer token), or off",
    )
    metrics_token: str = _field(
        "",
        "the admin token /metrics asks for with --metrics token (not an API key; prefer "
        "the environment variable to the flag, which other users can see)",
        shown="none",
    )
    console: bool | None = _field(
        None,
        "serve the web console at / (its static files and /console/ routes); on by default "
        "when --host is a loopback address, off otherwise",
        shown="on with a loopback --host",
    )
    console_link_secret: str = _field(
        "",
        "a secret mixed into the key that signs the console's download links, so that "
        "reading the database alone cannot make one (give every replica the same; prefer "
        "the environment variable to the flag)",
        shown="none",
    )
    console_upload_threshold_bytes: int = _field(
        DEFAULT_CONSOLE_UPLOAD_THRESHOLD_BYTES,
        "files larger than this go from the web console through the Uploads API, in parallel parts",
    )
    log_level: str = _field("info", "log level: debug, info, warning, error")
    http_server: str = _field(
        "uvicorn",
        "the HTTP server: uvicorn (every connection bound of this page), or granian "
        "(pip install 'openai-files[granian]'; sends whole files with the ASGI pathsend "
        "extension; bounds differ, see docs/deploy.md)",
    )

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            value = getattr(self, name)
            shown = shown_float(value) if isinstance(value, float) else value
            return ValueError(f"invalid value {shown} for {flag_name(name)}: {why}")

        for f in dataclasses.fields(self):
            if f.type == "float" and not math.isfinite(getattr(self, f.name)):
                raise bad(f.name, "it must be a finite number of seconds")
        if not 0 <= self.port <= 65535:
            raise bad("port", "it must be from 0 (any free port) to 65535")
        if not self.sweep_interval_seconds > 0:
            raise bad("sweep_interval_seconds", "it must be more than 0 (0 would never pause)")
        for name in (
            "sweep_grace_seconds",
            "reservation_ttl_seconds",
            "upload_retention_seconds",
            "header_timeout_seconds",
            "body_rate_window_seconds",
            "keep_alive_timeout_seconds",
            "database_connect_timeout_seconds",
            "storage_check_timeout_seconds",
            "ready_timeout_seconds",
            "batch_request_timeout_seconds",
            "batch_retry_base_seconds",
        ):
            if not getattr(self, name) > 0:
                raise bad(name, "it must be more than 0")
        if self.body_idle_timeout_seconds < 0:
            raise bad("body_idle_timeout_seconds", "it must be 0 (never) or more")
        if not 0 <= self.key_cache_seconds <= KEY_CACHE_MAX_SECONDS:
            raise bad(
                "key_cache_seconds",
                f"it must be from 0 (look up every request) to {KEY_CACHE_MAX_SECONDS:g} (a "
                "key revoked on one server works on the others for up to that long)",
            )
        if self.file_cache_rows < 0:
            raise bad("file_cache_rows", "it must be 0 (no cache) or more")
        if self.min_body_bytes_per_second < 0:
            raise bad("min_body_bytes_per_second", "it must be 0 (no minimum) or more")
        if self.max_uploads_per_key < 0:
            raise bad("max_uploads_per_key", "it must be 0 (no limit) or more")
        for name in ("org_quota_bytes", "database_pool_min_size"):
            if getattr(self, name) < 0:
                raise bad(name, "it must be 0 or more")
        if self.batch_lease_seconds < BATCH_LEASE_MIN_SECONDS:
            raise bad(
                "batch_lease_seconds",
                f"it must be at least {BATCH_LEASE_MIN_SECONDS} (leases end on whole seconds)",
            )
        if self.batch_max_retries < 0:
            raise bad("batch_max_retries", "it must be 0 (no retries) or more")
        if self.batch_upstream_url:
            problem = engine_url_problem(self.batch_upstream_url)
            if problem:
                raise bad("batch_upstream_url", problem)
        if self.batch_upstream_api_key:
            problem = engine_key_problem(self.batch_upstream_api_key)
            if problem:
                raise bad("batch_upstream_api_key", problem)
        if self.max_pending_upload_bytes is not None and self.max_pending_upload_bytes < 0:
            raise bad("max_pending_upload_bytes", "it must be 0 or more")
        for name in (
            "max_file_bytes",
            "max_batch_file_bytes",
            "max_upload_bytes",
            "max_part_bytes",
            "max_pending_uploads",
            "max_active_batches",
            "max_projects_per_org",
            "max_service_accounts_per_project",
            "max_admin_keys_per_org",
            "audit_retention_days",
            "batch_concurrency",
            "batch_concurrency_per_batch",
            "max_connections",
            "database_pool_max_size",
            "storage_concurrent_parts",
            "console_upload_threshold_bytes",
        ):
            if getattr(self, name) < 1:
                raise bad(name, "it must be at least 1")
        if self.database_pool_max_size < self.database_pool_min_size:
            raise bad(
                "database_pool_max_size",
                f"it must be at least --database-pool-min-size ({self.database_pool_min_size})",
            )
        if not S3_MIN_PART_BYTES <= self.storage_part_bytes <= S3_MAX_PART_BYTES:
            raise bad(
                "storage_part_bytes",
                f"it must be from {shown_bytes(S3_MIN_PART_BYTES)} to "
                f"{shown_bytes(S3_MAX_PART_BYTES)}, S3's limits for a part",
            )
        fewest = -(-self.max_file_bytes // S3_MAX_PARTS)
        if urlsplit(self.storage).scheme == "s3" and self.storage_part_bytes < fewest:
            raise bad(
                "storage_part_bytes",
                f"it must be at least {fewest} (--max-file-bytes / {S3_MAX_PARTS}), so that "
                f"the largest file fits in the {S3_MAX_PARTS} parts S3 allows an upload; "
                "raise it or lower --max-file-bytes",
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise bad("log_level", "it must be one of " + ", ".join(LOG_LEVELS))
        if self.max_header_bytes < 1024:
            raise bad("max_header_bytes", "it must be at least 1024")
        if self.http_server not in HTTP_SERVERS:
            raise bad("http_server", "it must be one of " + ", ".join(HTTP_SERVERS))
        if self.metrics not in METRICS_MODES:
            raise bad("metrics", "it must be one of " + ", ".join(METRICS_MODES))
        if self.metrics == "token" and not self.metrics_token:
            raise ValueError(
                "--metrics token needs a token: set OPENAI_FILES_METRICS_TOKEN (or "
                "--metrics-token), e.g. to the output of `openssl rand -hex 32`"
            )
        if self.metrics_token and self.metrics != "token":
            raise ValueError(
                f"a metrics token is set but --metrics is {self.metrics}: pass --metrics token "
                "to require it, or unset OPENAI_FILES_METRICS_TOKEN (--metrics-token)"
            )
        idle = self.body_idle_timeout_seconds
        if idle and idle >= self.sweep_grace_seconds:
            raise bad(
                "body_idle_timeout_seconds",
                "it must be shorter than --sweep-grace-seconds "
                f"({shown_float(self.sweep_grace_seconds)}), so that a stalled upload ends "
                "before the sweeper may take its bytes for orphans; lower it or raise the grace",
            )
        if self.max_form_parts < 1:
            raise bad("max_form_parts", "it must be at least 1 (an upload has a file part)")
        if idle and self.reservation_ttl_seconds < idle:
            raise bad(
                "reservation_ttl_seconds",
                "it must be at least --body-idle-timeout-seconds "
                f"({shown_float(idle)}), so that a pausing live upload keeps its reservation",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `OPENAI_FILES_*` variables, then `overrides` (not None)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = parse_value(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def pending_upload_bytes(self) -> int:
        """The bytes one project's pending uploads may reserve together:
        `max_pending_upload_bytes`, else half the organization's quota."""
        if self.max_pending_upload_bytes is not None:
            return self.max_pending_upload_bytes
        return self.org_quota_bytes // 2

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.data_dir / 'files.sqlite3').resolve()}"

    @property
    def storage_url(self) -> str:
        return self.storage or f"file:///{self.data_dir.resolve()}"

    @property
    def console_enabled(self) -> bool:
        """Whether the web console is served: `console` when given, else whether the
        server listens on a loopback address only."""
        return is_loopback_host(self.host) if self.console is None else self.console


def is_loopback_host(host: str) -> bool:
    """Whether `host` (an address or `localhost`) is reachable from this machine only."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to any address
        return False


def engine_url_problem(url: str) -> str | None:
    """What is wrong with an engine's base URL (None: nothing): it must be http(s), name a
    host, and its path end in /v1 (`http://engine:8000/v1`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it must be an http:// or https:// URL with a host, such as http://engine:8000/v1"
    if not parts.path.rstrip("/").endswith("/v1"):
        return "it must end in /v1, such as http://engine:8000/v1 (the base URL of the API)"
    if parts.query or parts.fragment:
        return "it must have no query nor fragment"
    if parts.username is not None or parts.password is not None:
        return "it must not hold a user or password (give the engine's key as its api key)"
    return None


def engine_key_problem(key: str) -> str | None:
    """What is wrong with an engine's API key (None: nothing): it goes in a header, so it
    must be printable ASCII with no space (a line break would end the header)."""
    if not all("!" <= c <= "~" for c in key):
        return "it must be printable ASCII with no spaces nor line breaks"
    return None


def env_name(field_name: str) -> str:
    """The environment variable of a setting: `max_file_bytes` -> `OPENAI_FILES_MAX_FILE_BYTES`."""
    return ENV_PREFIX + field_name.upper()


def flag_name(field_name: str) -> str:
    """The `serve` flag of a setting: `max_file_bytes` -> `--max-file-bytes`."""
    return "--" + field_name.replace("_", "-")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_value(field_name: str, raw: str) -> Any:
    """Parse the text of a setting into its type; a clear ValueError when it does not fit."""
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    kind = types[field_name]
    try:
        if kind in ("bool", "bool | None"):
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if kind in ("int", "int | None"):
            return int(raw.replace("_", ""))
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw).expanduser()
        return raw
    except ValueError:
        raise ValueError(
            f"invalid value {raw!r} for {env_name(field_name)} ({flag_name(field_name)}): "
            f"expected {kind}"
        ) from None


def shown_float(value: float) -> str:
    """`60` for 60.0, `0.5` for 0.5."""
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def shown_bytes(n: int) -> str:
    """`536870912 (512 MB)`: a byte count, and the same in MB or GB when it is round."""
    for size, unit in ((GiB, "GB"), (MiB, "MB")):
        if n >= size and n % size == 0:
            return f"{n} ({n // size} {unit})"
    return str(n)


def shown_default(field_name: str) -> str:
    """A setting's default as `--help` and README write it: `./data`, `536870912 (512 MB)`,
    `60` (not `60.0`), `false`."""
    field = next(f for f in dataclasses.fields(Settings) if f.name == field_name)
    if field.metadata.get("shown") is not None:
        return str(field.metadata["shown"])
    value = field.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and field_name.endswith("_bytes"):
        return shown_bytes(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def setting_fields() -> list[dataclasses.Field[Any]]:
    """The settings in declaration order (for the CLI and the docs)."""
    return list(dataclasses.fields(Settings))
