"""The shape of a run's results (bench/results/*.json): one TypedDict per row.

The rows are measured by their modules (rows 1-4 and 8: bench/transfers.py, row 5:
bench/scale.py, rows 6-7: bench/rates.py, row 9: bench/uploads.py, row 10:
bench/batches.py, the server stacks: bench/stack.py, the peer: bench/peers.py) and written
as JSON by the runner (bench/__main__.py). The report (bench/_report.py) reads them back as
plain JSON: it also reads results of older runs, whose rows had other keys.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class Summary(TypedDict):
    """A measured quantity over several runs (`Figure.summary()`)."""

    unit: str
    min: float
    median: float
    max: float
    runs: list[float]


# -- the peer, beside rows 1 to 4 (bench/peers.py) --
class PeerUpload(TypedDict):
    name: str
    ours: Summary
    reference: Summary
    sdk_on_ours: Summary
    ratio: float
    vs_sdk_on_ours: float
    vs_ours: float


class PeerDownload(TypedDict):
    name: str
    ours: Summary
    curl: Summary
    reference: Summary
    sdk_on_ours: Summary
    curl_on_ours: Summary
    ratio: float
    ratio_curl: float
    vs_sdk_on_ours: float
    curl_vs_ours: float
    vs_ours: float


class PeerMemory(TypedDict):
    name: str
    ours: dict[str, Summary]
    peaks_mib: dict[str, float]


class PeerSdk(TypedDict):
    name: str
    ours: Summary
    sdk_on_ours: Summary
    ratio: float
    sdk_client_peak_mib: float


# -- rows 1 to 4 and the curve: transfers on the embedded server (bench/transfers.py) --
class Row1(TypedDict):
    runs: int
    what: str
    ours: Summary
    reference: Summary
    reference_name: str
    ratio: float
    ratio_name: str
    reference_floor: Summary
    floor_name: str
    ratio_floor: float
    target: str
    met: bool
    peer: NotRequired[PeerUpload]


class Row2(TypedDict):
    runs: int
    what: str
    ours: Summary
    ours_durable: Summary
    reference: Summary
    reference_name: str
    reference_curl: Summary
    ratio: float
    ratio_name: str
    ratio_curl: float
    target: str
    met: bool
    peer: NotRequired[PeerDownload]


class Row3(TypedDict):
    runs: int
    what: str
    ours: dict[str, Summary]
    peaks_mib: dict[str, float]
    target: str
    met: bool
    peer: NotRequired[PeerMemory]


class Row4(TypedDict):
    runs: int
    what: str
    ours: Summary
    reference: Summary
    reference_name: str
    ratio: float
    ratio_name: str
    sdk_client_peak_mib: float
    target: str
    met: None
    peer: NotRequired[PeerSdk]


class CurvePoint(TypedDict):
    """One file size of the curve: each run's figures, as a transfer's row has them."""

    bytes: int
    upload_s: list[float]
    upload_server_kib: list[int]
    upload_client_kib: list[int]
    download_s: list[float]
    download_server_kib: list[int]
    download_client_kib: list[int]


# -- row 5: listing latency (bench/scale.py) --
class NoLimit(TypedDict):
    """`GET /v1/files` with no `limit` on one deployment."""

    objects: int
    of_files: int
    p50_ms: float
    p95_ms: float
    pages_p50_ms: float
    server_growth_kib: int
    server_base_kib: int


class Row5(TypedDict):
    what: str
    #: deployment -> number of files -> request -> p50 (and "<request> p95") in ms.
    ours: dict[str, dict[str, dict[str, float]]]
    no_limit: dict[str, NoLimit]
    populate_s: dict[str, dict[str, float]]
    postgres_ping_ms: float
    floor_ms: dict[str, float]
    reference_name: str
    ratio: float
    ratios: dict[str, float]
    ratio_name: str
    worst_p50_ms: float
    worst_p50_by_deployment_ms: dict[str, float]
    no_limit_growth_mib: float
    target: str
    met: bool


# -- rows 6 and 7: requests and uploads per second (bench/rates.py) --
class RateRow(TypedDict):
    what: str
    ours: Summary
    reference: Summary
    reference_name: str
    ratio: float
    ratio_name: str
    target: str
    met: bool


# -- row 8: rows 1 and 2 on PostgreSQL + S3 (bench/transfers.py) --
class Row8(TypedDict):
    runs: int
    what: str
    ours: dict[Literal["upload", "download"], Summary]
    reference: dict[Literal["put", "get"], Summary]
    reference_name: str
    ratio: float
    ratio_name: str
    ratio_upload: float
    ratio_download: float
    target: str
    met: bool


# -- row 9: the Uploads API's completion (bench/uploads.py) --
class Row9(TypedDict):
    what: str
    #: deployment ("local", "s3") -> figure -> its summary.
    ours: dict[str, dict[str, Summary]]
    reference: dict[str, Summary]
    reference_name: str
    ratio: float
    ratio_name: str
    ratio_local: float
    ratio_s3: float
    #: Of the rows before manifests (completion copied): against obstore put, and against
    #: a join of fresh parts.
    ratio_s3_put: NotRequired[float]
    ratio_local_md5: float
    ratio_local_fresh: NotRequired[float]
    ratio_s3_md5: float
    #: Since completion writes a manifest: the download of the file made of parts against
    #: the same bytes as one blob (throughput), per deployment; `ratio_local` and
    #: `ratio_s3` are then the completion's seconds (its target is absolute), and the
    #: reference is `md5sum`.
    download_local: NotRequired[float]
    download_s3: NotRequired[float]
    peak_mib: float
    rounds_retried: int
    target: str
    met: bool


# -- row 10: the Batch API (bench/batches.py) --
class BatchMemory(TypedDict):
    """The largest batch on one deployment: the server's peak RSS growth, and its pace."""

    growth_kib: int
    seconds: float
    requests_per_s: float


class PeerBatch(TypedDict):
    """Row 10 on the peer: the same batch, create to completed; or why it was not run."""

    name: str
    run: bool
    reason: NotRequired[str]
    ours: NotRequired[Summary]
    #: Row 10's floor, measured again beside the peer.
    reference: NotRequired[Summary]
    concurrency: NotRequired[int]
    requests_per_s: NotRequired[float]
    vs_ours: NotRequired[float]
    ratio: NotRequired[float]
    growth_kib: NotRequired[int]


class Row10(TypedDict):
    runs: int
    what: str
    requests: int
    concurrency: int
    latency_ms: float
    #: deployment ("local", "s3") -> create to completed as the client sees it.
    ours: dict[str, Summary]
    #: deployment -> completed_at - created_at as the server reports them (whole seconds).
    ours_server: dict[str, Summary]
    #: The floor: the bodies straight to the engine, one aiohttp session (before: httpx
    #: clients of 4 connections each).
    reference: Summary
    reference_name: str
    #: The same with httpx clients of 4 connections each, and the ratio against it.
    reference_httpx: NotRequired[Summary]
    reference_httpx_name: NotRequired[str]
    ratio_httpx: NotRequired[float]
    #: (Earlier rows) one httpx client of all the connections (httpx's pool is the limit).
    reference_single: NotRequired[Summary]
    ratio: float
    ratio_name: str
    ratio_local: float
    ratio_s3: float
    requests_per_s: dict[str, float]
    memory_requests: int
    memory: dict[str, BatchMemory]
    memory_mib: float
    target: str
    met: bool
    peer: NotRequired[PeerBatch]


Row = Row1 | Row2 | Row3 | Row4 | Row5 | RateRow | Row8 | Row9 | Row10


# -- the HTTP servers side by side (bench/stack.py) --
class StackMetric(TypedDict):
    what: str
    unit: str
    uvicorn: Summary
    granian: Summary
    #: granian against uvicorn, as a speed: above 1, granian is faster.
    granian_speed: float


class Stack(TypedDict):
    file_mib: float
    listed: int
    metrics: dict[str, StackMetric]


# -- the whole run (bench/__main__.py) --
class Machine(TypedDict):
    cores: int | None
    cpu: str
    memory_gib: float
    disk_gib: int
    python: str
    commit: str
    date: str


class Load(TypedDict):
    before: tuple[float, float, float]
    after: tuple[float, float, float]


class Result(TypedDict):
    machine: Machine
    quick: bool
    runs: int
    command: str
    seconds: float
    load: Load
    rows: dict[str, Row]
    curve: list[CurvePoint]
    stack: NotRequired[Stack]
