"""What the SageMaker backend's batch capture costs: `save(..., source="batch")` of N
rows to S3, then `load` of the newest rows and `label_by_id`, against a local moto.

    uv run python -m bench.sagemaker_capture [--rows 10000 100000] [--chunks 1]

Rows are `bench/dataset.py`'s 10-column synthetic data with made-up predictions; each
save is what one chunk task of the batch scoring pipeline does (`--chunks` saves of
`--rows` each, e.g. `--rows 100000 --chunks 10` for a million rows), under the ids that
pipeline gives (`batch_scoring.chunk_scoring.chunk_prediction_ids`: UUIDv7s of the
run's start, by chunk and row). `label_by_id` labels ~1,000 rows of the first chunk and
reports how many capture objects it read. moto_server runs on
127.0.0.1 (no AWS): S3 time here is loopback HTTP, so the figures are the backend's own
cost (serialising the capture records, one PUT per 100,000 rows) plus moto's. Prints the
seconds per step, the objects and bytes written, the peak resident memory of this
process, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not start")


def objects_read(backend: object) -> list[str]:
    """The keys the backend's own S3 client reads from now on (a hook that counts)."""
    keys: list[str] = []

    def note(params: dict, **_: object) -> None:
        keys.append(params["Key"])

    backend.aws.s3.meta.events.register("before-parameter-build.s3.GetObject", note)
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chunks", type=int, default=1, help="saves of --rows each")
    arguments = parser.parse_args()
    process, url = start_moto()
    os.environ.update({
        "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
    })  # fmt: skip
    try:
        import boto3
        import numpy as np
        import pandas as pd

        from backends.sagemaker import Sagemaker
        from batch_scoring.chunk_scoring import chunk_prediction_ids
        from bench.dataset import generate

        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(
            "rows/save  saves  save s (each)  objects  MB  load(100) s  "
            "label ~1000 by id s  objects read"
        )
        for count, rows in enumerate(arguments.rows):
            bucket = f"bench-{count}"
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=bucket)
            backend = Sagemaker({
                "target": "bench", "region": "us-east-1", "data_capture_uri": f"s3://{bucket}/c",
                "ground_truth_uri": f"s3://{bucket}/g",
            })  # fmt: skip
            features = generate(rows).drop(columns="label")
            rng = np.random.default_rng(0)
            timings = []
            started_ms, first_chunk = int(time.time() * 1000), []
            for chunk in range(arguments.chunks):
                ids = chunk_prediction_ids(f"Bench/{count}", started_ms, chunk, range(rows))
                first_chunk = first_chunk or ids
                outputs = pd.DataFrame({
                    "prediction": rng.choice(["alpha", "beta", "gamma"], rows),
                    "confidence": rng.random(rows),
                    "id": ids,
                    "model_version": "1",
                })  # fmt: skip
                started = time.perf_counter()
                backend.save(features, outputs, source="batch")
                timings.append(time.perf_counter() - started)
            listing = s3.list_objects_v2(Bucket=bucket, Prefix="c/")["Contents"]
            size = sum(item["Size"] for item in listing) / 1e6
            started = time.perf_counter()
            newest = backend.load(limit=100)
            loaded = time.perf_counter() - started
            assert newest is not None and len(newest) == 100
            read = objects_read(backend)
            started = time.perf_counter()
            labelled = backend.label_by_id(
                {first_chunk[i]: "alpha" for i in range(0, rows, max(rows // 1000, 1))}
            )
            labelling = time.perf_counter() - started
            assert labelled == len(range(0, rows, max(rows // 1000, 1)))
            captures = sum(key.startswith("c/") for key in read)
            each = ", ".join(f"{t:.2f}" for t in timings)
            print(
                f"{rows:>9,}  {arguments.chunks:>5}  {sum(timings):6.2f} ({each})  "
                f"{len(listing):>7}  {size:5.1f}  {loaded:11.2f}  {labelling:18.2f}  "
                f"{captures:>12}"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak resident memory of this process: {peak:.0f} MiB")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        process.terminate()
        process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
