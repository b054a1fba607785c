"""`fathom serve` under load: search latency while answers generate, against idle, in one run.

Builds (or reuses, with --data) an index of the Python docs' tutorial/ and faq/, starts `fathom serve`
as a child process on a free loopback port, then:
  1. idle:   8 concurrent clients call GET /api/search for --seconds (the raw baseline);
  2. loaded: the same 8 clients for --seconds while one more client asks GET /api/ask (fast mode)
             back to back, reading every SSE event to the end;
  3. time to first token: in Chromium (the page's own EventSource, measured in page JS) for
     --ttft-questions questions, against `fathom ask --json`'s first_token_ms for the same questions
     (the CLI path in a fresh process), and the server's own first_token_ms;
  4. an abandoned answer: how long after the client drops the connection the model is free again
     (the next /api/ask gets its `start` event).
Prints search p50/p95 idle vs loaded, the ratio (target <= 3x) and the error count (target 0).

    flock /tmp/fathom-bench.lock python benchmarks/serve.py [--data DIR] [--seconds 60] [--json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
QA = "/work/shared/eval/pyfaq_qa.dev.jsonl"
FALLBACK_QUERIES = ["default arguments shared", "list comprehension", "virtual environment", "exceptions",
                    "string formatting", "dictionary keys order", "global variables in functions",
                    "lambda closures", "modules import", "classes inheritance"]


def questions(n: int) -> list[str]:
    try:
        with open(QA, encoding="utf-8") as f:
            return [json.loads(line)["question"] for line in f if line.strip()][:n]
    except OSError:
        return FALLBACK_QUERIES[:n]


GARDEN_QUERIES = ["How do I prune tomatoes?", "How deep should tomato seedlings be planted?",
                  "How often should the compost heap be turned?", "When should vegetables be watered?",
                  "compost nitrogen carbon", "tomato suckers", "deep watering roots", "fungal disease leaves",
                  "finished compost smell", "space tomato plants"]


def build(data: str, small: bool) -> None:
    from fathom.demo import PYTHON_DOCS
    from fathom.engine import Engine
    from fathom.localsite import serve_directory

    engine = Engine(data)
    if engine.status().index is not None:
        return
    if small:  # the test suite's 4-page garden site: a run small enough for a busy machine
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from conftest import write_site
        site = os.path.join(data, "site")
        write_site(site)
        engine.crawl([os.path.join(site, "docs")])
    else:
        with serve_directory(PYTHON_DOCS) as base:
            engine.crawl([f"{base}tutorial/index.html", f"{base}faq/index.html"])
    engine.index()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def search_clients(base: str, queries: list[str], seconds: float, n: int = 8) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def client(seed: int):
        rnd = random.Random(seed)
        host, port = base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while time.monotonic() < stop:
            q = rnd.choice(queries)
            t = time.perf_counter()
            try:
                conn.request("GET", "/api/search?" + urllib.parse.urlencode({"q": q, "k": 10}))
                r = conn.getresponse()
                body = r.read()
                if r.status != 200 or not json.loads(body)["hits"]:
                    errors.append(f"{r.status} {body[:100]!r}")
                else:
                    lat.append((time.perf_counter() - t) * 1000)
            except Exception as exc:  # counted, and the client reconnects
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.close()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"requests": len(lat), "errors": len(errors), "error_samples": errors[:3],
            "p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1), "rps": round(len(lat) / seconds, 1)}


def sse_events(base: str, path: str, stop_after: str | None = None):
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    conn.request("GET", path)
    resp = conn.getresponse()
    event = None
    try:
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                yield event, line[6:]
                if event == stop_after:
                    return
                event = None
    finally:
        conn.sock and conn.sock.close()
        conn.close()


def asker(base: str, qs: list[str], stop: threading.Event, out: dict) -> None:
    i = 0
    while not stop.is_set():
        q = qs[i % len(qs)]
        i += 1
        try:
            kinds = [e for e, _ in sse_events(base, "/api/ask?" + urllib.parse.urlencode({"q": q, "mode": "fast"}))]
            out["answers"] += 1
            if kinds[-1] != "answer":
                out["errors"] += 1
        except Exception as exc:
            out["errors"] += 1
            out.setdefault("samples", []).append(repr(exc))


def browser_ttft(base: str, qs: list[str]) -> list[dict]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/lib/chromium/chromium", headless=True,
                              args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync"])
        for q in qs:
            page = b.new_page()
            t0 = time.perf_counter()
            page.goto(base + "/?" + urllib.parse.urlencode({"q": q, "mode": "fast"}))
            page.wait_for_selector("#answer[data-done='1']", timeout=600_000)
            nav_ms = page.evaluate("performance.timeOrigin")  # noqa: F841 (kept for debugging)
            js_ttft = page.get_attribute("#answer", "data-first-token-ms")
            out.append({"question": q, "browser_first_token_ms": float(js_ttft) if js_ttft else None,
                        "page_load_to_done_s": round(time.perf_counter() - t0, 2)})
            page.close()
        b.close()
    return out


def cli_ttft(data: str, qs: list[str]) -> list[float]:
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = []
    for q in qs:
        p = subprocess.run([sys.executable, "-m", "fathom", "--data", data, "ask", q, "--mode", "fast", "--json"],
                           capture_output=True, text=True, env=env, timeout=600)
        t = json.loads(p.stdout)["timings"]
        out.append(float(t.get("first_token_ms", "nan")))
    return out


def abandoned_release(base: str, q: str) -> float:
    """Seconds from dropping an answer's connection to the next answer's `start` event."""
    events = sse_events(base, "/api/ask?" + urllib.parse.urlencode({"q": q, "mode": "fast"}))
    for e, _ in events:
        if e == "token":
            break
    events.close()  # closes the socket mid-answer
    t = time.perf_counter()
    for e, _ in sse_events(base, "/api/ask?" + urllib.parse.urlencode({"q": "compost", "mode": "fast"}),
                           stop_after="start"):
        if e == "start":
            return time.perf_counter() - t
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="data dir to build/reuse (default: a temp dir)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--ttft-questions", type=int, default=3)
    ap.add_argument("--small", action="store_true",
                    help="the 4-page garden test site instead of the Python docs (a reduced run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    data = args.data or tempfile.mkdtemp(prefix="fathom-serve-bench-")
    t0 = time.monotonic()
    build(data, args.small)
    qs = GARDEN_QUERIES * 4 if args.small else questions(40)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "-m", "fathom", "--data", data, "serve", "--port", str(port)],
                              env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/api/search?q=warm", timeout=60).read()
                break
            except OSError:
                time.sleep(0.5)
        # warm the answer model once so that neither phase pays the load
        list(sse_events(base, "/api/ask?" + urllib.parse.urlencode({"q": qs[0], "mode": "fast"})))
        load0 = open("/proc/loadavg").read().split()[0]
        idle = search_clients(base, qs, args.seconds, args.clients)
        stop, ask_stats = threading.Event(), {"answers": 0, "errors": 0}
        th = threading.Thread(target=asker, args=(base, qs[:4] if args.small else qs[5:], stop, ask_stats))
        th.start()
        time.sleep(1.0)
        loaded = search_clients(base, qs, args.seconds, args.clients)
        stop.set()
        th.join()
        load1 = open("/proc/loadavg").read().split()[0]
        release_s = abandoned_release(base, qs[1])
        ttq = qs[1:1 + args.ttft_questions] if args.small else qs[10:10 + args.ttft_questions]
        browser = browser_ttft(base, ttq)
    finally:
        server.terminate()
        server.wait(30)
    cli = cli_ttft(data, ttq)
    result = {
        "data": data, "small": args.small, "seconds": args.seconds, "clients": args.clients, "loadavg_1m": [load0, load1],
        "idle": idle, "loaded": loaded, "answers_during_load": ask_stats,
        "p95_ratio": round(loaded["p95_ms"] / idle["p95_ms"], 2) if idle["p95_ms"] else None,
        "p50_ratio": round(loaded["p50_ms"] / idle["p50_ms"], 2) if idle["p50_ms"] else None,
        "errors": idle["errors"] + loaded["errors"] + ask_stats["errors"],
        "abandoned_answer_release_s": round(release_s, 3),
        "ttft_browser_ms": [b["browser_first_token_ms"] for b in browser],
        "ttft_cli_ms": cli,
        "ttft_browser_p50_ms": statistics.median([b["browser_first_token_ms"] for b in browser if b["browser_first_token_ms"]] or [float("nan")]),
        "ttft_cli_p50_ms": statistics.median(cli) if cli else None,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"search, {args.clients} clients x {args.seconds:.0f}s each phase (load avg {load0} -> {load1})")
    print(f"  idle:   p50 {idle['p50_ms']:7.1f} ms  p95 {idle['p95_ms']:7.1f} ms  {idle['rps']:6.1f} req/s  "
          f"errors {idle['errors']}")
    print(f"  loaded: p50 {loaded['p50_ms']:7.1f} ms  p95 {loaded['p95_ms']:7.1f} ms  {loaded['rps']:6.1f} req/s  "
          f"errors {loaded['errors']}  ({ask_stats['answers']} answers generated meanwhile, "
          f"{ask_stats['errors']} answer errors)")
    print(f"  p95 loaded/idle: {result['p95_ratio']}x (target <= 3x); p50 {result['p50_ratio']}x; "
          f"total errors {result['errors']}")
    print(f"abandoned answer: next answer started {release_s:.2f}s after the client left")
    print(f"time to first token, fast mode: browser p50 {result['ttft_browser_p50_ms']:.0f} ms "
          f"{result['ttft_browser_ms']} vs CLI p50 {result['ttft_cli_p50_ms']:.0f} ms {cli}")


if __name__ == "__main__":
    main()
