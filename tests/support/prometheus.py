"""A real Prometheus for the tests: promtool and the server, found or skipped (failed in CI).

Debian's `prometheus` package brings both `/usr/bin/prometheus` and `/usr/bin/promtool`.
Without them the tests that need them skip, saying how to install them, so `uv run pytest`
passes on a fresh machine; `.ci/run` sets REQUIRE_PROMETHEUS=1, which makes a missing
binary a failure (as REQUIRE_BROWSER does for Chromium, see browser.py).

`running_prometheus` starts a server on a free port of 127.0.0.1 with its storage in a
temporary directory, scraping the targets it is given every second, and stops it by its
pid when the block ends. `serving_exposition` serves a metrics text of the test's own
making at /metrics, for a Prometheus to scrape.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.http_threads import serving_in_thread
from support.paths import REPO_ROOT
from support.ports import free_port

OBSERVABILITY = REPO_ROOT / "observability"
PROMETHEUS_RULES_DIR = OBSERVABILITY / "prometheus"
REQUIRE_PROMETHEUS = "REQUIRE_PROMETHEUS"
INSTALL_HINT = (
    "install Debian's package with `apt-get install prometheus`, which brings `prometheus` "
    "and `promtool` (.ci/run does)"
)
# Text exposition format 0.0.4, what prometheus_client serves.
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prometheus_required() -> bool:
    return os.environ.get(REQUIRE_PROMETHEUS, "").strip().lower() not in {"", "0", "false", "no"}


def require_binary(name: str) -> str:
    """The path of `name` (`prometheus` or `promtool`) on PATH; without it, skip the test
    (or fail it under REQUIRE_PROMETHEUS=1)."""
    path = shutil.which(name)
    if path is not None:
        return path
    if prometheus_required():
        pytest.fail(f"`{name}` is not installed and {REQUIRE_PROMETHEUS} is set: {INSTALL_HINT}.")
    pytest.skip(f"`{name}` is not installed: {INSTALL_HINT}; {REQUIRE_PROMETHEUS}=1 fails instead.")


def run_promtool(*arguments: str, directory: Path = PROMETHEUS_RULES_DIR) -> str:
    """Run `promtool <arguments>` in `directory`; its output, or a failed test showing it."""
    command = [require_binary("promtool"), *arguments]
    result = subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
    return output


class PrometheusQueryError(AssertionError):
    """Prometheus refused a query (a parse or evaluation error)."""


@dataclass
class PrometheusServer:
    """A Prometheus process started by `running_prometheus` and its HTTP API's address."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def api(self, path: str, **parameters: str) -> Any:
        """The `data` of a successful GET /api/v1/<path>; raises PrometheusQueryError with
        Prometheus' own message otherwise."""
        address = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(parameters)}"
        try:
            with urllib.request.urlopen(address, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422: the query is wrong
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusQueryError(
                f"{path} {parameters}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The result of an instant query now (a vector's series, or a scalar's one value)."""
        data = self.api("query", query=expression)
        result = data["result"]
        return result if data["resultType"] in {"vector", "matrix"} else [{"value": result}]

    def stop(self) -> None:
        """End the process by its pid: SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def write_configuration(
    directory: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()
) -> Path:
    """A prometheus.yml scraping `targets` (host:port) every second as job `model-server`."""
    configuration = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": "model-server", "static_configs": [{"targets": list(targets)}]}
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(configuration, indent=2), encoding="utf-8")  # JSON is YAML
    return path


@contextmanager
def running_prometheus(
    directory: Path, targets: Sequence[str] = (), rule_files: Sequence[Path] = ()
) -> Iterator[PrometheusServer]:
    """A real Prometheus on a free port of 127.0.0.1, storing in `directory`, scraping
    `targets` every second; stopped by its pid when the block ends."""
    binary = require_binary("prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    configuration = write_configuration(directory, targets, rule_files)
    address = f"127.0.0.1:{free_port()}"
    log = directory / "prometheus.log"
    command = [
        binary,
        f"--config.file={configuration}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    server = PrometheusServer(process, f"http://{address}", log)
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.stop()


def wait_until_ready(server: PrometheusServer, timeout: float = 60) -> None:
    """Return once /-/ready answers 200; fail with the log if the process ends or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    log = server.log.read_text(encoding="utf-8", errors="replace")[-3000:]
    pytest.fail(
        f"Prometheus did not become ready at {server.url} (exit {server.process.poll()}):\n{log}"
    )


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = 60, interval: float = 0.5
) -> None:
    """Poll `condition` until it holds; fail saying `what` was awaited otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def serving_exposition(render: Callable[[], str]) -> Iterator[str]:
    """Serve `render()` (a metrics text, rendered anew at each scrape) at /metrics on a
    free port of 127.0.0.1; yields the `host:port` to scrape."""

    class Exposition(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render().encode("utf-8")
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", EXPOSITION_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # one line per scrape: quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Exposition)
    with serving_in_thread(server) as port:
        yield f"127.0.0.1:{port}"
