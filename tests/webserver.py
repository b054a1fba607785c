"""Test helpers: `fathom serve`'s app on a real uvicorn server on a free loopback port, and a
small SSE reader over http.client (what a browser's EventSource sees)."""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

XSS_TITLE = "<script>alert(1)</script>"
XSS_PAGE = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{XSS_TITLE}</title></head>
<body><div role="main"><h1>Hostile &lt;b&gt;page</h1><p>This page about beetroot has a hostile title
<img src=x onerror="alert(2)"> and says beetroot likes cool weather and deep loose soil.</p></div></body></html>"""


@contextlib.contextmanager
def running_server(engine, **kw):
    """Yield the base URL of the web UI serving `engine`; stop the server afterwards."""
    import uvicorn

    from fathom.server import create_app

    app = create_app(engine, "127.0.0.1", log=lambda m: None, **kw)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def get(url: str, headers: dict | None = None, data: bytes | None = None, method: str | None = None):
    """(status, headers, body text) of one request; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def post_json(url: str, body, origin: str | None = None):
    headers = {"content-type": "application/json"}
    if origin:
        headers["origin"] = origin
    return get(url, headers, json.dumps(body).encode(), "POST")


class EventReader:
    """Reads server-sent events from one GET, one event at a time; `close()` drops the connection."""

    def __init__(self, base: str, path: str):
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)
        self.conn.request("GET", path, headers={"accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = dict(self.resp.getheaders())

    def next(self) -> tuple[str, str] | None:
        """(event, data) of the next event, or None at the end of the stream."""
        event, data = "message", []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if not line:
                if data:
                    return event, "\n".join(data)
                continue
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])

    def __iter__(self):
        while (ev := self.next()) is not None:
            yield ev

    def close(self) -> None:
        self.resp.close()
        self.conn.sock and self.conn.sock.close()
        self.conn.close()
