"""What an upload holds and gives back (`reservations.py`), against a store that records
each call: the lease is renewed once a third of its TTL has passed and not before, a
release or a removal that fails is logged and does not raise, and bytes that were not
committed are aborted rather than deleted."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import anyio
import pytest

from openai_files.server.reservations import Reservation, discard, remove_bytes
from openai_files.server.settings import Settings
from openai_files.server.stores import BlobStore, BlobWriter, MetadataStore

pytestmark = pytest.mark.anyio
TTL = 0.3


class Recorder:
    """A metadata store and a blob store in one, with the methods `reservations.py` calls:
    each call is recorded; those named in `failing` raise."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.failing = failing

    def _call(self, *call: object) -> None:
        self.calls.append(call)
        if call[0] in self.failing:
            raise OSError(f"{call[0]} failed")

    async def reserve(
        self, rid: str, org_id: str, nbytes: int, quota: int, expires_at: int, key: str
    ) -> None:
        self._call("reserve", rid, org_id, nbytes, key)

    async def renew(self, rid: str, expires_at: int) -> None:
        self._call("renew", rid)

    async def release(self, rid: str) -> None:
        self._call("release", rid)

    async def delete(self, key: str) -> None:
        self._call("delete", key)

    async def abort(self) -> None:
        self._call("abort")


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, reservation_ttl_seconds=TTL, body_idle_timeout_seconds=0)


async def test_a_lease_is_renewed_once_a_third_of_its_ttl_has_passed(tmp_path: Path) -> None:
    store = Recorder()
    meta = cast(MetadataStore, store)
    held = await Reservation.hold(
        meta, _settings(tmp_path), org_id="org-a", nbytes=10, key="file-x", quota=100
    )
    assert held.id.startswith("rsv_")
    assert store.calls == [("reserve", held.id, "org-a", 10, "file-x")]
    await held.renew()  # too early: nothing sent
    assert len(store.calls) == 1
    await anyio.sleep(TTL / 3 + 0.02)
    await held.renew()
    await held.renew()  # renewed just now: not again
    assert store.calls[1:] == [("renew", held.id)]
    await held.release()
    assert store.calls[2:] == [("release", held.id)]


async def test_a_reservation_may_be_named_by_its_caller(tmp_path: Path) -> None:
    store = Recorder()
    held = await Reservation.hold(
        cast(MetadataStore, store),
        _settings(tmp_path),
        org_id="org-a",
        nbytes=0,
        key="part_x",
        reservation_id="part_x",
    )
    assert held.id == "part_x"
    assert store.calls == [("reserve", "part_x", "org-a", 0, "part_x")]


async def test_what_cannot_be_given_back_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Recorder(failing=("release", "delete", "abort"))
    held = Reservation(cast(MetadataStore, store), _settings(tmp_path), "rsv_x")
    blobs = cast(BlobStore, store)
    await held.release()
    await remove_bytes(blobs, "file-a", "file-b")  # the first failing stops not the second
    await discard(blobs, "file-c", cast(BlobWriter, store), committed=False)
    assert store.calls == [
        ("release", "rsv_x"),
        ("delete", "file-a"),
        ("delete", "file-b"),
        ("abort",),
    ]
    logged = caplog.text
    for what in ("reservation rsv_x", "bytes of file-a", "bytes of file-b", "bytes of file-c"):
        assert what in logged


async def test_committed_bytes_are_deleted_and_others_aborted(tmp_path: Path) -> None:
    store = Recorder()
    blobs, writer = cast(BlobStore, store), cast(BlobWriter, store)
    await discard(blobs, "file-a", writer, committed=True)
    await discard(blobs, "file-b", writer, committed=False)
    assert store.calls == [("delete", "file-a"), ("abort",)]
