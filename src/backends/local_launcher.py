"""The Local backend's serving process: MLflow's scoring app on a listening socket it is given.

    python -m backends.local_launcher --listen-fd N --ready-fd N --workers N --handoff PATH

`LocalServer.start` (local_server.py) runs this. It is what `mlflow models serve
--env-manager local` runs (uvicorn's multiprocess supervisor, MLflow's scoring app
`mlflow.pyfunc.scoring_server.app:app` in each worker, the model from the environment
MLflow's `get_cmd` sets) with three differences, which make replacing a version lose
no request:

- The listening socket is not bound here but inherited (`--listen-fd`): bound by
  `LocalServer` for the first server, otherwise taken over from the server serving now.
  Old and new server accept from one kernel queue, so a connection waiting in it is
  answered by whichever accepts it, and none is refused while they change places.
- Readiness is reported on `--ready-fd` once every worker has loaded the model,
  answered a health check in process and accepts connections: `/ping` on the shared
  port could reach the old server. `LocalServer` stops the old server only then.
- On SIGTERM a worker first stops accepting, then waits for the connections it has
  accepted to send their request, and only then runs uvicorn's graceful shutdown (which
  would close a connection it has accepted but not yet read: a reset for its client).
  Requests in flight finish; the socket lives on in the new server.

The socket is handed to the next server over a unix socket (`--handoff`, SCM_RIGHTS):
a thread of this supervisor sends a duplicate of the listening descriptor to whoever
connects.

Slow clients are cut off by `backends.local_connections` (a deadline for a request's
headers and one for its body, a cap on each worker's connections; its variables
SERVING_HEADER_TIMEOUT, SERVING_BODY_TIMEOUT and SERVING_MAX_CONNECTIONS). With a token
set (SERVING_AUTH_TOKEN), a worker proves before it accepts that an unauthenticated
request is refused: a model registered before the HTTP guard existed
(`inference.http_guard`, which the model carries) would answer it, and is not served.

Nothing else of the project is imported here: the workers import only this module,
`backends.local_connections`, uvicorn and what the model itself needs (its own copy of
`inference`, which may be older than the project's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from backends.local_connections import ConnectionLimits, LimitedConfig

APP = "mlflow.pyfunc.scoring_server.app:app"
TOKEN_VARIABLE = "SERVING_AUTH_TOKEN"  # read by the model's HTTP guard
READY = b"ready\n"
# How long a stopping worker waits for a connection it accepted to send its request.
# uvicorn closes an idle connection after its keep-alive timeout (5 s) anyway.
UNREAD_WAIT_SECONDS = 5.0
logger = logging.getLogger("uvicorn.error")


async def asgi_status(
    app, path: str, method: str = "GET", headers: list | None = None, body: bytes = b""
) -> int:
    """The HTTP status `app` answers `method` `path` (`headers`, `body`) with, in process."""
    status = 0

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers or [], "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }  # fmt: skip
    await app(scope, receive, send)
    return status


class HandoverServer(uvicorn.Server):
    """A uvicorn worker that checks its app before accepting and drains before closing."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # The app (and the model) is loaded by now; prove it answers before accepting.
        status = await asgi_status(self.config.loaded_app, "/ping")
        if status != 200:
            logger.error("The scoring app answered /ping with %s: not serving.", status)
            sys.exit(uvicorn.config.STARTUP_FAILURE)
        if os.environ.get(TOKEN_VARIABLE):
            # A request any model answers (with no predictions), but without the token.
            status = await asgi_status(
                self.config.loaded_app, "/invocations", "POST",
                [(b"content-type", b"application/json")], b'{"inputs": []}',
            )  # fmt: skip
            if status != 401:
                logger.error(
                    "A token is set, but the model answered a request without it (%s): it was "
                    "registered before servers checked tokens. Register it again with this "
                    "code, or deploy it without a token (on 127.0.0.1 only).", status,
                )  # fmt: skip
                sys.exit(uvicorn.config.STARTUP_FAILURE)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # this worker's descriptor only: the next server keeps accepting
        deadline = time.monotonic() + UNREAD_WAIT_SECONDS
        while self._unread_connections() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await super().shutdown(sockets)

    def _unread_connections(self) -> int:
        """Connections accepted whose first request has not arrived in full."""
        return sum(
            getattr(connection, "cycle", True) is None
            for connection in self.server_state.connections
        )


class HandoverProcess(Process):
    """uvicorn's worker process, running a `HandoverServer`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = HandoverServer(config=self.config)
        return self._server


class Supervisor(Multiprocess):
    """uvicorn's supervisor that reports readiness and hands its socket on."""

    def __init__(
        self,
        config: uvicorn.Config,
        listener: socket.socket,
        ready_fd: int,
        handoff: Path,
        startup_timeout: float,
    ) -> None:
        super().__init__(config, [listener])
        self.listener, self.ready_fd, self.handoff = listener, ready_fd, handoff
        self.startup_timeout = startup_timeout
        self.served = False

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            process = HandoverProcess(self.config, self.sockets)
            process.start()
            self.processes.append(process)
        deadline = time.monotonic() + self.startup_timeout
        for process in self.processes:
            remaining = max(deadline - time.monotonic(), 0.1)
            if not process.wait_until_ready(remaining, self.should_exit):
                logger.error(
                    "Worker %s did not start serving (exit code %s): stopping.",
                    process.pid, process.exitcode,
                )  # fmt: skip
                self._report(b"failed\n")
                self.should_exit.set()
                return
        # Bound before READY is reported: the next server may connect as soon as it is.
        offering = self._offer_handoff()
        threading.Thread(
            target=self._hand_off, args=(offering,), daemon=True, name="handoff"
        ).start()
        logger.info("All %d workers serve; listening socket offered at %s.", len(self.processes),
                    self.handoff)  # fmt: skip
        self.served = True
        self._report(READY)

    def keep_subprocess_alive(self) -> None:
        # uvicorn's loop replaces a worker that died; it must run the same kind of server.
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set() or process.is_alive(
                self.config.timeout_worker_healthcheck
            ):
                continue
            process.kill()
            process.join()
            if process.exitcode == uvicorn.config.STARTUP_FAILURE:
                logger.error("Worker %s failed to start: stopping.", process.pid)
                self.should_exit.set()
                return
            logger.info("Worker %s died; starting another.", process.pid)
            replacement = HandoverProcess(self.config, self.sockets)
            replacement.start()
            self.processes[index] = replacement

    def _report(self, message: bytes) -> None:
        if self.ready_fd < 0:
            return
        with contextlib.suppress(OSError):  # the deploying process may be gone
            os.write(self.ready_fd, message)
        with contextlib.suppress(OSError):
            os.close(self.ready_fd)
        self.ready_fd = -1

    def _offer_handoff(self) -> socket.socket:
        """The unix socket, bound and listening, on which the listener is handed off."""
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.handoff.unlink(missing_ok=True)
        server.bind(str(self.handoff))
        os.chmod(self.handoff, 0o600)
        server.listen()
        return server

    def _hand_off(self, server: socket.socket) -> None:
        """Send a duplicate of the listening socket to each process that connects."""
        with server:
            while True:
                connection, _ = server.accept()
                with connection, contextlib.suppress(OSError):
                    socket.send_fds(connection, [b"listener"], [self.listener.fileno()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--ready-fd", type=int, required=True, help="readiness is written here")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--handoff", type=Path, required=True, help="unix socket to hand off on")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    arguments = parser.parse_args(argv)

    listener = socket.socket(fileno=arguments.listen_fd)
    config = LimitedConfig(
        APP, ConnectionLimits.from_environment(os.environ), workers=arguments.workers
    )
    supervisor = Supervisor(
        config, listener, arguments.ready_fd, arguments.handoff, arguments.startup_timeout
    )
    try:
        supervisor.run()
    finally:
        supervisor._report(b"stopped\n")
        arguments.handoff.unlink(missing_ok=True)
    return 0 if supervisor.served else 1


if __name__ == "__main__":
    # Run as this module's importable name, so the workers (spawned, not forked) unpickle
    # `HandoverProcess` from `backends.local_launcher` rather than from `__main__`.
    from backends.local_launcher import main as launcher_main

    sys.exit(launcher_main())
