"""Serve a local directory over HTTP on 127.0.0.1 (for the demo, tests and benchmarks)."""
from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the stdlib
        pass


class _Server(http.server.ThreadingHTTPServer):
    # socketserver's default listen backlog of 5 overflows under Scrapy's 8 concurrent
    # connections; each dropped SYN then costs a ~1 s retransmit
    request_queue_size = 64


@contextlib.contextmanager
def serve_directory(directory: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Yield the base URL ("http://127.0.0.1:PORT/") of a threaded static server for `directory`."""
    handler = functools.partial(_QuietHandler, directory=directory)
    server = _Server((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
