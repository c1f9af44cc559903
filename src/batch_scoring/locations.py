"""Where batch scoring's files live, local or on S3, and how they move between tasks.

Files travel through a staging area beside the output (a hidden directory for a local
output, a prefix beside the key for an s3:// one), which every task can reach: `start`
stages the valid rows of each chunk and the refused ones, each chunk task its scored
rows, and `assemble` publishes the assembled output, which appears in one move. S3 goes
through Metaflow's S3 client (imported inside the functions), so the chunks run on AWS
Batch or Kubernetes too.

A local file is never written through a name someone else could have prepared: each
is written to a new temporary file created exclusively in its directory (`mkstemp`),
then renamed over its name (`os.replace` replaces a link planted there, it does not
follow it), and the staging directory must be a directory of the run's own user,
not a link.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.data import S3_SCHEME

# The most keys one S3 DeleteObjects request takes.
DELETE_BATCH = 1000


def is_s3(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def normalized(location: str) -> str:
    """A location as comparable text: an absolute path, or the s3:// URL as it is."""
    return location if is_s3(location) else os.path.abspath(location)


def rejects_location(output_location: str) -> str:
    """Where the refused rows go: beside the output, `<name>.rejects.parquet`."""
    for suffix in (".parquet", ".pq"):
        if output_location.endswith(suffix):
            return output_location[: -len(suffix)] + ".rejects.parquet"
    return output_location + ".rejects.parquet"


def staging_location(output_location: str, run_id: str) -> str:
    """A run's own area beside the output, where its tasks exchange files."""
    if is_s3(output_location):
        return f"{output_location}.staging-{run_id}/"
    path = Path(output_location).resolve()
    return str(path.with_name(f".{path.name}.staging-{run_id}"))


def join_location(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if is_s3(directory) else os.path.join(directory, name)


def fetch(location: str, directory: str) -> str | None:
    """A local path holding the file at `location` (downloaded if s3://); None if absent."""
    if not is_s3(location):
        return location if os.path.isfile(location) else None
    from metaflow import S3

    with S3() as s3:
        found = s3.get(location, return_missing=True)
        if not found.exists:
            return None
        local = os.path.join(directory, Path(found.key).name or "object")
        shutil.move(found.path, local)
    return local


def store(local_path: str, location: str) -> None:
    """Put a local file at `location`, a staging place of the run (nobody reads it yet:
    not flushed to disk)."""
    if is_s3(location):
        from metaflow import S3

        with S3() as s3:
            s3.put_files([(location, local_path)])
        return
    _check_private_directory(Path(location).parent)
    _replace_with_copy(local_path, Path(location), 0o600, durable=False)


def publish(local_path: str, location: str, run_id: str) -> None:
    """Make `local_path` the file at `location` in one step: a reader sees the old or the new.

    Local: written to a temporary name in the same directory, then `os.replace`. S3:
    uploaded to a temporary key, copied to the final key (one object write S3 makes
    visible whole), and the temporary key deleted.
    """
    if not is_s3(location):
        destination = Path(location)
        destination.parent.mkdir(parents=True, exist_ok=True)
        _replace_with_copy(local_path, destination, _umask_mode())
        return
    partial = f"{location}.partial-{run_id}"
    store(local_path, partial)
    client, _ = _s3_client()
    bucket, key = _bucket_key(location)
    try:
        client.copy({"Bucket": bucket, "Key": _bucket_key(partial)[1]}, bucket, key)
    finally:
        client.delete_object(Bucket=bucket, Key=_bucket_key(partial)[1])


def remove_staging(location: str) -> None:
    """Delete a run's staging area (what it holds is in the output, or was refused)."""
    if not is_s3(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    from metaflow import S3

    with S3() as s3:
        keys = [_bucket_key(item.url)[1] for item in s3.list_recursive([location])]
    client, _ = _s3_client()
    bucket = _bucket_key(location)[0]
    for start in range(0, len(keys), DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


@contextlib.contextmanager
def staging_removed_on_failure(location: str) -> Iterator[None]:
    """Delete the staging area if the block fails: a failed run leaves nothing behind."""
    try:
        yield
    except BaseException:
        remove_staging(location)
        raise


def _replace_with_copy(source: str, destination: Path, mode: int, durable: bool = True) -> None:
    """Make a copy of `source` the file at `destination`, with permissions `mode`, in one
    step: copied to a temporary file made exclusively beside it (flushed to disk if
    `durable`), then renamed over it."""
    descriptor, partial = tempfile.mkstemp(
        prefix=f".{destination.name}.partial-", dir=destination.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as output, open(source, "rb") as copied:
            shutil.copyfileobj(copied, output)
            output.flush()
            if durable:
                os.fsync(output.fileno())
            os.fchmod(output.fileno(), mode)
        os.replace(partial, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def _check_private_directory(path: Path) -> None:
    """Create the staging directory `path` for this user only, or check that it is one
    of theirs and not a link (PermissionError: `errors.refuse` cleans staging areas up
    through this module, which therefore raises no ScoringError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        kind = "a link" if stat.S_ISLNK(found.st_mode) else "not a directory of this user"
        raise PermissionError(
            f"The staging area {path} is {kind}: something else made it. Remove it and run "
            "again, or write the output to a directory only you can write to."
        )


def _umask_mode() -> int:
    """The permissions a new file gets from the process's umask (as `open` would)."""
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _bucket_key(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    return bucket, key


def _s3_client() -> tuple[Any, Any]:
    """boto3's S3 client as Metaflow configures it (credentials, METAFLOW_S3_ENDPOINT_URL)."""
    from metaflow.plugins.datatools.s3.s3util import get_s3_client

    return get_s3_client()
