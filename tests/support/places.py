"""Where a Local backend keeps its things, and real model servers started there.

A `Place` is one directory with a capture database, a server state directory and a
target URL on a free port of 127.0.0.1 (nobody listens there until a server starts);
it writes the project config that points the pipelines at it. A `ModelServer` is a
place with a real `mlflow models serve` started by `backends.local_server.LocalServer`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import LOCAL_CONFIG
from .ports import free_port


@dataclass
class Place:
    """One backend's directory, target and config. `workers` and `max_batch_size`, when
    set, go into the backend's settings."""

    directory: Path
    model_name: str | None = None  # the config's `model.name`; None keeps local.yml's
    target: str = field(default="")
    workers: int | None = None
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.target = self.target or f"http://127.0.0.1:{free_port()}/invocations"

    @property
    def url(self) -> str:
        return self.target

    @property
    def port(self) -> int:
        return int(self.target.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def database(self) -> Path:
        return self.directory / "capture.db"

    @property
    def state_dir(self) -> Path:
        return self.directory / "serving"

    @property
    def config(self) -> Path:
        return self.directory / "project.yml"

    def backend_config(self) -> dict[str, Any]:
        """Settings of a `backend.Local` that talks to this place's target and database."""
        settings: dict[str, Any] = {
            "target": self.target,
            "database": str(self.database),
            "state_dir": str(self.state_dir),
        }
        if self.workers is not None:
            settings["workers"] = self.workers
        if self.max_batch_size is not None:
            settings["max_batch_size"] = self.max_batch_size
        return settings

    def write_config(self) -> Path:
        """config/local.yml with this place's backend (and model name, if set)."""
        import yaml

        config = yaml.safe_load(LOCAL_CONFIG.read_text())
        config["backend"] = {**config["backend"], **self.backend_config()}
        if self.model_name is not None:
            config["model"] = {"name": self.model_name}
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config

    def backend(self) -> Any:
        from backends.local import Local

        return Local(config=self.backend_config())

    # --- the capture database ------------------------------------------------------------

    def captured_count(self) -> int:
        with sqlite3.connect(self.database) as connection:
            return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]

    def captured_rows(self, ids: Iterable[str] | None = None) -> dict[str, dict]:
        """Captured predictions by id (all of them, or those among `ids`)."""
        with sqlite3.connect(self.database) as connection:
            connection.row_factory = sqlite3.Row
            rows = connection.execute("SELECT * FROM predictions").fetchall()
        wanted = None if ids is None else set(ids)
        return {
            row["id"]: {**dict(row), "inputs": json.loads(row["inputs"])}
            for row in rows
            if wanted is None or row["id"] in wanted
        }

    def capture(
        self, data: Any, schema: Any, rows: int, *, drift: bool, seed: int, version: str | None
    ) -> dict[str, str]:
        """Store `rows` predictions of traffic (drifted or not) as the server stores them;
        return id -> true species.

        Rows come from `common.traffic.sample_requests` (the traffic pipeline's sampler);
        the prediction is the true species, so the labels decide the accuracy.
        """
        from common.traffic import sample_requests
        from inference.capture import CaptureStore

        requests = sample_requests(data, schema, rows, drift=drift, seed=seed)
        # The same draw as sample_requests makes (same size, same seed): the targets.
        drawn = data.sample(n=rows, replace=rows > len(data), random_state=seed)
        assert [r["island"] for r in requests] == drawn["island"].tolist()
        truth = drawn[schema.target].tolist()
        ids = [uuid.uuid4().hex for _ in range(rows)]
        store = CaptureStore(str(self.database))
        try:
            store.save(ids, requests, truth, [0.9] * rows, version)
        finally:
            store.close()
        return dict(zip(ids, truth, strict=True))

    def label(self, quality: float) -> int:
        """Simulated ground truth for every unlabelled prediction, through the backend."""
        return self.backend().label(quality)

    def newest_labelled(self, limit: int) -> list[tuple[str, str]]:
        """(prediction, ground truth) of the `limit` newest labelled predictions."""
        with sqlite3.connect(self.database) as connection:
            return connection.execute(
                "SELECT prediction, ground_truth FROM predictions "
                "WHERE ground_truth IS NOT NULL ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()

    def accuracy(self, limit: int) -> float:
        rows = self.newest_labelled(limit)
        return sum(p == t for p, t in rows) / len(rows)


@dataclass(kw_only=True)
class ModelServer(Place):
    """A real `mlflow models serve` of `model_uri` at this place."""

    model_uri: str
    version: str
    workers: int | None = 2
    max_batch_size: int | None = 50

    def environment(self) -> dict[str, str]:
        """What the server process reads: where to capture, which version, the limit."""
        environment = {
            "SERVING_CAPTURE_DATABASE": str(self.database),
            "SERVING_MODEL_VERSION": str(self.version),
            "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
        }
        if self.max_batch_size is not None:
            environment["SERVING_MAX_BATCH_SIZE"] = str(self.max_batch_size)
        return environment

    def start(self) -> Any:
        """Start the server and wait until it answers; return its `ServerState`."""
        from backends.local_server import LocalServer

        return LocalServer(self.state_dir).start(
            self.model_uri, self.version, self.target, self.workers or 1, self.environment()
        )

    def running(self) -> bool:
        from backends.local_server import ping

        return ping(self.target)

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    @property
    def pid(self) -> int:
        from backends.local_server import LocalServer

        state = LocalServer(self.state_dir).state()
        assert state is not None, "the server is not running"
        return state.pid

    def stop(self) -> Any:
        """Stop the server (and its uvicorn child); return the state it had, or None."""
        from backends.local_server import LocalServer

        return LocalServer(self.state_dir).stop()
