"""Clients that keep a model server busy, and what happened to each of their requests.

`Clients(url)` starts threads that each send one-row requests in a loop, every request
on a new connection (as `Local.invoke` and the traffic pipeline send them), until
stopped. Each answered prediction's id is kept with the `phase` in which its request
was sent (the caller moves to the next phase, e.g. after a deployment returns); a
request that did not get a 200 is counted by how it failed: `refused`, `reset`,
`closed` (the connection ended without an answer), `timeout`, `HTTP <status>`.
`pause` (seconds between one client's requests) leaves the server's CPU to a new
server starting beside it on a small machine; 0 hammers.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .rows import SPEC_ROW


@dataclass(frozen=True)
class Answer:
    id: str
    phase: int  # the phase the request was sent in


class BadStatus(Exception):
    """The server answered, but not with 200."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


def failure_kind(error: BaseException) -> str:
    if isinstance(error, BadStatus):
        return f"HTTP {error.status}"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(error, http.client.RemoteDisconnected | http.client.IncompleteRead):
        return "closed"
    if isinstance(error, TimeoutError):
        return "timeout"
    return type(error).__name__


class Clients:
    """`count` threads sending `row` to the invocations `url` until `stop()`."""

    def __init__(
        self,
        url: str,
        count: int = 8,
        row: dict[str, Any] | None = None,
        timeout: float = 60.0,
        pause: float = 0.0,
    ) -> None:
        parsed = urlparse(url)
        self.host, self.port, self.path = parsed.hostname, parsed.port, parsed.path
        self.body = json.dumps({"inputs": [row or SPEC_ROW]}).encode()
        self.timeout, self.pause = timeout, pause
        self.phase = 0
        self.answers: list[Answer] = []
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, str] = {}  # the first message of each kind of failure
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, daemon=True, name=f"client-{n}")
            for n in range(count)
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join()

    @property
    def sent(self) -> int:
        with self._lock:
            return len(self.answers) + sum(self.failures.values())

    def next_phase(self) -> int:
        with self._lock:
            self.phase += 1
            return self.phase

    def wait_for_answers(self, phase: int, count: int, timeout: float = 120.0) -> None:
        """Block until `count` requests sent in `phase` were answered (or any failed)."""
        with self._lock:
            done = self._lock.wait_for(
                lambda: sum(a.phase == phase for a in self.answers) >= count or self.failures,
                timeout=timeout,
            )
        assert done, f"fewer than {count} answers in phase {phase} after {timeout:.0f} s"

    def ids(self, phase: int | None = None) -> list[str]:
        with self._lock:
            return [a.id for a in self.answers if phase is None or a.phase == phase]

    def _loop(self) -> None:
        while not self._stopping.is_set():
            phase = self.phase
            try:
                ids = self._send()
            except (OSError, http.client.HTTPException, BadStatus) as error:
                self._fail(failure_kind(error), repr(error))
                continue
            with self._lock:
                self.answers.extend(Answer(id_, phase) for id_ in ids)
                self._lock.notify_all()
            if self.pause:
                self._stopping.wait(self.pause)

    def _send(self) -> list[str]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            headers = {"Content-Type": "application/json", "Connection": "close"}
            connection.request("POST", self.path, self.body, headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise BadStatus(response.status, body)
        return [p["id"] for p in json.loads(body)["predictions"]]

    def _fail(self, kind: str, message: str) -> None:
        with self._lock:
            self.failures[kind] += 1
            self.examples.setdefault(kind, message)
            self._lock.notify_all()
