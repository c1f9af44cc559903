"""Free ports of 127.0.0.1."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (never 8080, where a
    developer's own model server may come up)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port != 8080:
            return port


def unused_url() -> str:
    """The invocations URL of a free port of 127.0.0.1: no server answers there."""
    return f"http://127.0.0.1:{free_port()}/invocations"
