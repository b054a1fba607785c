"""A generated site of a few hundred pages, served with artificial latency by a server that
counts what it was asked and how many requests it had in flight at once (tests, benchmarks)."""
from __future__ import annotations

import contextlib
import http.server
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

_VOCAB = [f"{a}{b}" for a in ("amber", "basalt", "cinder", "delta", "ember", "fjord", "granite", "harbor",
                              "iris", "juniper", "kelp", "lichen", "meadow", "nectar", "onyx", "pebble")
          for b in ("arch", "brook", "crest", "dune", "field", "grove", "hollow", "isle", "knoll", "loch")]


def _prose(seed: str, words: int = 500) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_VOCAB) for _ in range(words))


def _page(title: str, text: str, links=()) -> bytes:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{text}</p><ul>{anchors}</ul></body></html>").encode()


def scale_site(sections: int = 20, per_section: int = 15, duplicates: int = 5,
               crawl_delay_s: float = 0.0) -> tuple[dict[str, bytes], int]:
    """(path -> HTML bytes, pages a crawl stores) for a site: /site/index.html links to
    `sections` section pages, each linking to `per_section` leaf pages. `duplicates` leaves have
    an exact copy and `duplicates` a near copy (one word changed) elsewhere, which a crawl keeps
    as aliases, and a /private/ page is disallowed by robots.txt."""
    duplicates = min(duplicates, sections)
    routes: dict[str, bytes] = {}
    texts: dict[str, str] = {}
    section_links = [f"s{s}.html" for s in range(sections)]
    routes["/site/index.html"] = _page("Index", _prose("index"), section_links + ["../private/secret.html"])
    for s in range(sections):
        leaves = [f"p{s}_{i}.html" for i in range(per_section)]
        if s < duplicates:
            leaves += [f"copy{s}.html", f"near{s}.html"]
        routes[f"/site/s{s}.html"] = _page(f"Section {s}", _prose(f"section {s}"), leaves + ["index.html"])
        for i in range(per_section):
            texts[f"p{s}_{i}"] = _prose(f"page {s} {i}")
            routes[f"/site/p{s}_{i}.html"] = _page(f"Page {s}.{i}", texts[f"p{s}_{i}"], [f"s{s}.html"])
    for s in range(duplicates):
        words = texts[f"p{s}_0"].split()
        routes[f"/site/copy{s}.html"] = _page(f"Page {s}.0", texts[f"p{s}_0"], [f"s{s}.html"])
        near = " ".join(words[:250] + ["zzzchanged"] + words[251:])
        routes[f"/site/near{s}.html"] = _page(f"Page {s}.0", near, [f"s{s}.html"])
    routes["/private/secret.html"] = _page("Secret", _prose("secret"))
    routes["/robots.txt"] = b"User-agent: *\nDisallow: /private/\n" + (
        f"Crawl-delay: {crawl_delay_s}\n".encode() if crawl_delay_s else b"")
    stored = 1 + sections + sections * per_section
    return routes, stored


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
            srv.hits[self.path] += 1
            srv.log.append((self.path, time.monotonic()))
        try:
            time.sleep(srv.latency_s)
            body = srv.routes.get(self.path)
            status = 200 if body is not None else 404
            body = body if body is not None else b"not found"
            ctype = "text/plain" if self.path.endswith(".txt") else "text/html; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed (a crash test)
        finally:
            with srv.lock:
                srv.active -= 1

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


@contextlib.contextmanager
def serve_site(routes: dict[str, bytes], latency_s: float = 0.05) -> Iterator[tuple[str, "_Server"]]:
    """Yield (base URL, server) for `routes`; each response waits `latency_s`. The server's
    `hits` counts requests per path and `max_active` the most requests it had in flight at once."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes, server.latency_s = routes, latency_s
    server.lock, server.active, server.max_active, server.hits = threading.Lock(), 0, 0, Counter()
    server.log = []  # (path, arrival time)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()
