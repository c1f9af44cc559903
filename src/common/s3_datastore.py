"""Metaflow's S3 datastore without a subprocess for a handful of objects.

Metaflow moves more than 10 objects at once (a task's artifacts, a join's inputs)
through `s3op`: a new Python process that imports Metaflow and boto3 and forks one
worker per object (up to 64), each building its own S3 client. Every task stores
more than 10 artifacts (its parameters and Metaflow's own `_` artifacts count), so
every task that writes one new value paid it: 1-3 s on a quiet 2-core machine,
3-25 s on a loaded one, against ~20-40 ms for each object moved in the task's own
process (moto on loopback). The training join's five inputs paid it twice.

`transfer_small_batches_in_process` keeps batches of up to `SAVE_LIMIT` objects to
save and `LOAD_LIMIT` to load in the task's process, one request after another, as
Metaflow already does for 10; larger batches still go to `s3op`, whose parallel
workers pay off there. Only the S3 datastore changes; what is stored, and where, does
not.
"""

from __future__ import annotations

from itertools import chain, islice
from typing import Any

# Objects moved one after another in the task's process, where Metaflow would start
# `s3op` above 10. At ~20-40 ms an object, 64 saves take 1.3-2.6 s, the cost of one
# `s3op` on a quiet machine: beyond it the parallel workers win. Loads go further:
# a join asks for 3 metadata files per possible attempt (18) of each input, most of
# them absent (a 404 is one short request), so five inputs are 90 paths.
SAVE_LIMIT = 64
LOAD_LIMIT = 256
# Metaflow's own threshold: up to this many objects it already stays in process.
METAFLOW_SEQUENTIAL_LIMIT = 10


class _CloseAll:
    """Closes every part of a batch that was loaded in parts."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def close(self) -> None:
        for part in self.parts:
            part.__exit__(None, None, None)


def transfer_small_batches_in_process() -> None:
    """Patch Metaflow's S3 datastore once (idempotent): batches of up to
    `SAVE_LIMIT` objects are saved, and of up to `LOAD_LIMIT` loaded, in process."""
    from metaflow.datastore.datastore_storage import CloseAfterUse
    from metaflow.plugins.datastores.s3_storage import S3Storage

    if getattr(S3Storage, "_small_batches_in_process", False):
        return
    save_bytes, load_bytes = S3Storage.save_bytes, S3Storage.load_bytes

    def save_in_process(self, path_and_bytes_iter, overwrite=False, len_hint=0):
        # The iterator yields only the objects not stored yet (content-addressed), so
        # `len_hint` (every artifact of the task) says nothing about the batch. The
        # first objects go one by one, streamed as Metaflow's small path does; only
        # a batch larger than the limit hands its rest to `s3op`.
        iterator = iter(path_and_bytes_iter)
        save_bytes(self, islice(iterator, SAVE_LIMIT), overwrite=overwrite, len_hint=0)
        following = next(iterator, None)
        if following is not None:
            save_bytes(self, chain([following], iterator), overwrite=overwrite, len_hint=len_hint)

    def load_in_process(self, paths):
        paths = list(paths)
        if len(paths) <= METAFLOW_SEQUENTIAL_LIMIT or len(paths) > LOAD_LIMIT:
            return load_bytes(self, paths)
        # Metaflow's in-process path, a part at a time; each part's downloaded files
        # live until the caller is done with the whole batch.
        step = METAFLOW_SEQUENTIAL_LIMIT
        parts = [load_bytes(self, paths[i : i + step]) for i in range(0, len(paths), step)]
        loaded = chain.from_iterable(part.__enter__() for part in parts)
        return CloseAfterUse(loaded, closer=_CloseAll(parts))

    S3Storage.save_bytes = save_in_process
    S3Storage.load_bytes = load_in_process
    S3Storage._small_batches_in_process = True
