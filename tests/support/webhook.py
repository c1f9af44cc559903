"""A real HTTP server on 127.0.0.1 standing in for the Argo Events webhook.

It records the body of every POST (what Metaflow's `ArgoEvent.publish` sends) and
answers with `status`. Used by the tests of common.events' users: retraining on alert
and auto-promotion.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.http_threads import serving_in_thread


@dataclass
class Webhook:
    """An HTTP server that records every POST body and answers with `status`."""

    url: str
    status: int = 200
    bodies: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def serving_webhook() -> Iterator[Webhook]:
    """A Webhook listening on a free port of 127.0.0.1, stopped on exit."""
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            hook.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/metaflow-event"
    # A short poll interval: shutdown() waits for one.
    with serving_in_thread(server, poll_interval=0.02):
        yield hook
