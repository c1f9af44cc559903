"""Metaflow's S3 datastore without a subprocess for a handful of objects.

Metaflow moves more than 10 objects at once (a task's artifacts, a join's inputs)
through `s3op`: a new Python process that imports Metaflow and boto3 and forks one
worker per object (up to 64), each building its own S3 client. Every task stores
more than 10 artifacts (its parameters and Metaflow's own `_` artifacts count), so
every task that writes one new value paid it: 1-3 s on a quiet 2-core machine,
3-25 s on a loaded one, against ~20-40 ms for each object moved in the task's own
process (moto on loopback). The training join's five inputs paid it twice.

`transfer_small_batches_in_process` keeps batches of up to `SAVE_LIMIT` objects to
save and `LOAD_LIMIT` to load in the task's process, as Metaflow already does for 10,
in up to `THREADS` threads sharing one S3 client: the metadata probes every task and
the runtime make for each datastore they open (3 files per possible attempt: 18) take
about one round trip, not 18, and a task's new artifacts upload side by side. Larger
batches still go to `s3op`, whose parallel workers pay off there.
Only the S3 datastore changes; what is stored, and where, does not.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from itertools import chain, islice
from typing import Any

# Objects moved one after another in the task's process, where Metaflow would start
# `s3op` above 10. At ~20-40 ms an object, 64 saves take 1.3-2.6 s, the cost of one
# `s3op` on a quiet machine: beyond it the parallel workers win. Loads go further:
# a join asks for 3 metadata files per possible attempt (18) of each input, most of
# them absent (a 404 is one short request), so five inputs are 90 paths.
SAVE_LIMIT = 64
LOAD_LIMIT = 256
THREADS = 8
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
        # first objects go through Metaflow's small path, one object per call, at most
        # `THREADS` in flight (so in memory) at once; only a batch larger than the
        # limit hands its rest to `s3op`. The iterator is advanced in this thread only.
        iterator = iter(path_and_bytes_iter)
        self.s3_client.client  # noqa: B018 - made here first, so that no two threads make one
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            flying: set = set()
            for item in islice(iterator, SAVE_LIMIT):
                if len(flying) >= THREADS:
                    done, flying = wait(flying, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # an upload's error stops the batch
                flying.add(pool.submit(save_bytes, self, [item], overwrite=overwrite))
            for future in flying:
                future.result()
        following = next(iterator, None)
        if following is not None:
            save_bytes(self, chain([following], iterator), overwrite=overwrite, len_hint=len_hint)

    def load_in_process(self, paths):
        paths = list(paths)
        if len(paths) < 2 or len(paths) > LOAD_LIMIT:
            return load_bytes(self, paths)
        # Metaflow's in-process path (up to 10 paths) for each part, the parts in
        # threads sharing the storage's S3 client (boto3 clients are thread-safe).
        # Each part's downloaded files live until the caller is done with the batch.
        self.s3_client.client  # noqa: B018 - made here first, so that no two threads make one
        size = min(METAFLOW_SEQUENTIAL_LIMIT, -(-len(paths) // THREADS))
        parts = [load_bytes(self, paths[i : i + size]) for i in range(0, len(paths), size)]
        closer = _CloseAll(parts)
        try:
            with ThreadPoolExecutor(max_workers=min(THREADS, len(parts))) as pool:
                loaded = list(pool.map(lambda part: list(part.__enter__()), parts))
        except BaseException:
            closer.close()
            raise
        return CloseAfterUse(iter(chain.from_iterable(loaded)), closer=closer)

    S3Storage.save_bytes = save_in_process
    S3Storage.load_bytes = load_in_process
    S3Storage._small_batches_in_process = True
