"""Call an ASGI app in process, as uvicorn would: a request's headers, then its body in
chunks (optionally with a pause between them), and the answer it sends back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A token long enough for the guard, and the headers of an authorised JSON request.
TOKEN = "a-token-long-enough-to-use-0123456789"
BEARER = (b"authorization", f"Bearer {TOKEN}".encode())
JSON = (b"content-type", b"application/json")


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    chunks_read: int  # how many of the request's body chunks the app asked for

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app: Any,
    path: str = "/invocations",
    method: str = "POST",
    headers: Sequence[tuple[bytes, bytes]] = (),
    chunks: Sequence[bytes] = (b"",),
    pause: float = 0.0,
) -> Answer:
    """`app`'s answer to one request whose body arrives as `chunks`, `pause` s apart."""
    return asyncio.run(_call(app, path, method, list(headers), list(chunks), pause))


async def _call(app, path, method, headers, chunks, pause) -> Answer:
    answered = asyncio.Event()
    sent: list[dict[str, Any]] = []
    remaining = list(chunks) or [b""]
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if remaining:
            if pause:
                await asyncio.sleep(pause)
            chunk = remaining.pop(0)
            read += 1
            return {"type": "http.request", "body": chunk, "more_body": bool(remaining)}
        await answered.wait()  # as a server does: nothing more until the client leaves
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }  # fmt: skip
    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], dict(start.get("headers", [])), body, read)
