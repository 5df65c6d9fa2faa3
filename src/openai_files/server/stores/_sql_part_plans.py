"""The plan that takes an upload's parts away: a module of its own, so that the plans of
uploads and of the Administration API (archiving a project cancels its uploads) share it
without importing each other."""

from __future__ import annotations

from collections.abc import Sequence

from ._sql_dialect import Dialect, Plan, Stmt


def take_parts(d: Dialect, upload_ids: Sequence[str]) -> Plan[dict[str, list[str]]]:
    """Delete the part rows of the uploads and drop their reservations; each upload's part
    blob keys, in arrival order."""
    keys: dict[str, list[str]] = {upload_id: [] for upload_id in upload_ids}
    for i in range(0, len(upload_ids), d.in_batch):
        batch = upload_ids[i : i + d.in_batch]
        of_uploads, args = d.one_of("upload_id", batch)
        rows = yield Stmt(
            f"SELECT upload_id, blob_key FROM upload_parts WHERE {of_uploads} "
            "ORDER BY upload_id, seq",
            args,
            "all",
        )
        for r in rows:
            keys[r["upload_id"]].append(r["blob_key"])
        yield Stmt(f"DELETE FROM upload_parts WHERE {of_uploads}", args, "none")
        in_ids, args = d.one_of("id", batch)
        yield Stmt(f"DELETE FROM reservations WHERE {in_ids}", args, "none")
    return keys
