"""A test's own HTTP server (the standard library's), served in a thread on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serving_in_thread(server: socketserver.BaseServer, poll_interval: float = 0.5) -> Iterator[int]:
    """Serve `server` in a daemon thread while the block runs and yield its port; then
    shut it down, close its socket and wait for the thread. `shutdown` waits for up
    to one `poll_interval`."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
