"""Soak: many searches with answers mixed in, through fathom.Engine or through `fathom serve` over
real HTTP on a loopback port, then concurrent search clients while answers generate.

Reports errors (anything but a result or Fathom's own one-line error), p50/p95/p99 per window
of searches (over time), answer latency per window, and the RSS of the process that serves
(this one for the Engine, the `fathom serve` child for the server) after warm-up and at the end.
The raw baseline, measured in the same run on the same index and queries, is one raw query
embedding + one raw tantivy search (50 hits) + one raw hnswlib knn_query (k=50), as
benchmarks/query.py measures it.

    flock -w 1500 /tmp/fathom-bench.lock python benchmarks/soak.py --data DIR --target engine|server
        [--searches 10000] [--answers 200] [--clients 8] [--concurrent-answers 10]
        [--model qwen2.5-coder-0.5b] [--window 1000] [--skip N]

Answers are fast mode with --model as the fast model (default: the config's, Qwen2.5-Coder-0.5B).
`--skip N` skips the first N queries of the fixed query list (to continue a soak in pieces).
"""
from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.errors import FathomError  # noqa: E402
from fathom.config import load_config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from indexer.lexical import TEXT_FIELDS, query_terms  # noqa: E402


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return 0.0


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def line(name: str, xs: list[float]) -> str:
    return f"{name}: n={len(xs)} p50 {pct(xs, 50):.1f} ms, p95 {pct(xs, 95):.1f} ms, p99 {pct(xs, 99):.1f} ms"


def queries(engine: Engine, n: int, seed: int = 5) -> list[str]:
    """Questions made from the index's own headings and words, with some odd ones mixed in."""
    rng = random.Random(seed)
    chunks = sorted(engine.open_index().chunks.values(), key=lambda c: c.chunk_id)
    odd = ["", "   ", "\"unbalanced (quote", "a" * 3000, "NOT AND OR", "title:x url:y", "\x00", "🙂 émoji ß"]
    out = []
    for i in range(n):
        c = rng.choice(chunks)
        words = c.text.split()
        if i % 50 == 0:
            out.append(odd[(i // 50) % len(odd)])
        elif i % 2:
            out.append(c.heading.split(" > ")[-1] or c.title)
        else:
            start = rng.randrange(max(1, len(words) - 6))
            out.append(" ".join(words[start:start + rng.randint(2, 6)]))
    return out


class Outcomes:
    """Thread-safe tallies: `errors` are failures (a traceback, a 5xx, a dropped connection, an
    answer stream without an answer); `refused` are Fathom's own clear errors for bad input."""

    def __init__(self):
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.refused: dict[str, int] = {}
        self.stale = 0  # GETs sent again because the server had closed an idle keep-alive connection

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def stale_retry(self) -> None:
        with self.lock:
            self.stale += 1

    def refuse(self, what: str) -> None:
        with self.lock:
            self.refused[what] = self.refused.get(what, 0) + 1


class EngineTarget:
    """Searches and answers through fathom.Engine in this process."""

    name = "Engine"

    def __init__(self, engine: Engine, out: Outcomes, rerank: bool):
        self.engine, self.out, self.rerank = engine, out, rerank
        self.pid = os.getpid()

    def search(self, q: str) -> None:
        try:
            self.engine.search(q, k=10, rerank=self.rerank)
        except FathomError as exc:
            self.out.refuse(f"search {type(exc).__name__}: {str(exc)[:60]}")
        except Exception as exc:  # noqa: BLE001 - every other error is a failure of the soak
            self.out.error(f"search {q[:30]!r}: {type(exc).__name__}: {exc}")

    def ask(self, q: str) -> bool:
        """An answer; whether it carries notes (fallbacks, truncation)."""
        try:
            return bool(self.engine.ask(q, mode="fast").notes)
        except FathomError as exc:
            self.out.refuse(f"ask {type(exc).__name__}: {str(exc)[:60]}")
        except Exception as exc:  # noqa: BLE001
            self.out.error(f"ask: {type(exc).__name__}: {exc}")
        return False

    def close(self) -> None:
        pass


class ServerTarget:
    """Searches (GET /api/search) and answers (GET /api/ask, server-sent events) over HTTP to a
    `fathom serve` child on a free loopback port; one keep-alive connection per thread."""

    name = "server"

    def __init__(self, data: str, config: str | None, out: Outcomes, log_path: str):
        self.out = out
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "fathom", "--data", data] + (["--config", config] if config else []) + \
            ["serve", "--port", str(self.port)]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path[:1])})
        self.pid = self.proc.pid
        self.local = threading.local()
        deadline = time.monotonic() + 120
        while True:
            try:
                if self._get("/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"fathom serve did not start (exit {self.proc.poll()}); see {log_path}")
            time.sleep(0.5)

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        return c

    def _get(self, path: str) -> tuple[int, bytes]:
        """GET on this thread's keep-alive connection. The server closes a connection idle for
        5 s (uvicorn's keep-alive timeout), so a GET that finds its reused connection closed is
        sent again once on a new one, as browsers and urllib3 do (counted in `stale`)."""
        for attempt in (0, 1):
            reused = getattr(self.local, "conn", None) is not None
            c = self._conn()
            try:
                c.request("GET", path)
                r = c.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException) as exc:
                c.close()
                self.local.conn = None
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if not (reused and stale and attempt == 0):
                    raise
                self.out.stale_retry()
        raise AssertionError("unreachable")

    def search(self, q: str) -> None:
        try:
            status, body = self._get("/api/search?" + urllib.parse.urlencode({"q": q, "k": 10}))
        except (OSError, http.client.HTTPException) as exc:
            return self.out.error(f"search {q[:30]!r}: {type(exc).__name__}: {exc}")
        try:
            data = json.loads(body)
        except ValueError:
            return self.out.error(f"search {q[:30]!r}: HTTP {status}, not JSON: {body[:80]!r}")
        if status == 200 and "hits" in data:
            return None
        if status in (400, 503) and isinstance(data.get("error"), str) and "\n" not in data["error"]:
            return self.out.refuse(f"search HTTP {status}: {data['error'][:60]}")
        self.out.error(f"search {q[:30]!r}: HTTP {status}: {body[:120]!r}")

    def ask(self, q: str) -> bool:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)  # a stream per answer
        try:
            c.request("GET", "/api/ask?" + urllib.parse.urlencode({"q": q, "mode": "fast"}))
            r = c.getresponse()
            if r.status != 200:
                self.out.error(f"ask: HTTP {r.status}: {r.read()[:120]!r}")
                return False
            event, data = "", []
            for raw in r:
                ln = raw.decode().rstrip("\n")
                if ln.startswith("event: "):
                    event, data = ln[7:], []
                elif ln.startswith("data: "):
                    data.append(ln[6:])
                elif not ln and event in ("answer", "failure"):
                    payload = json.loads("\n".join(data))
                    if event == "failure":
                        self.out.error(f"ask: failure event: {payload}")
                        return False
                    return bool(payload.get("notes"))
            self.out.error("ask: the stream ended without an answer")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.out.error(f"ask: {type(exc).__name__}: {exc}")
        finally:
            c.close()
        return False

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def raw_baseline(engine: Engine, qs: list[str]) -> list[float]:
    """ms of one raw embed_query + raw tantivy search (50) + raw hnswlib knn_query (50) per query."""
    index, emb = engine.open_index(), engine.embedder
    lex = index.lexical
    out = []
    for q in qs:
        t = time.perf_counter()
        vec = emb.embed_query(q)
        terms = " ".join(query_terms(q))
        if terms:
            query, _ = lex.index.parse_query_lenient(terms, list(TEXT_FIELDS))
            res = lex.searcher.search(query, 50)
            [lex.searcher.doc(a)["chunk_id"][0] for _, a in res.hits]
        index.dense.knn_query(vec, k=min(50, len(index.chunks)))
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--target", choices=("engine", "server"), default="engine")
    ap.add_argument("--searches", type=int, default=10_000)
    ap.add_argument("--answers", type=int, default=200, help="spread evenly among the searches")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--concurrent-answers", type=int, default=10, help="0: no concurrent phase")
    ap.add_argument("--model", default=None, help="the fast answer model (default: the config's)")
    ap.add_argument("--rerank", action="store_true", help="search with the cross-encoder (default: off)")
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--skip", type=int, default=0, help="start this far into the fixed query list")
    ap.add_argument("--baseline-n", type=int, default=1000)
    args = ap.parse_args()
    cfg = load_config(None)
    config_path = None
    if args.model:
        cfg = dataclasses.replace(cfg, answer=dataclasses.replace(cfg.answer, fast_model=args.model))
        fd, config_path = tempfile.mkstemp(suffix=".toml", prefix="soak-")
        with os.fdopen(fd, "w") as f:
            f.write(f'[answer]\nfast_model = "{args.model}"\n')
    print(f"load at start: {load()}; target {args.target}; fast model {cfg.answer.fast_model}; "
          f"rerank {'on' if args.rerank else 'off'}", flush=True)
    engine = Engine(args.data, cfg)  # the Engine target, and the raw baseline for both
    n_total = args.skip + max(args.searches, args.baseline_n)
    allq = queries(engine, n_total)
    qs = allq[args.skip:args.skip + args.searches]
    print(f"index: {engine.open_index().manifest.chunks} chunks ({engine.open_index().manifest.pages} pages); "
          f"queries {args.skip}-{args.skip + len(qs)} of the fixed list", flush=True)
    out = Outcomes()
    if args.target == "engine":
        target = EngineTarget(engine, out, args.rerank)
    else:
        target = ServerTarget(args.data, config_path, out, tempfile.mktemp(prefix="soak-serve-", suffix=".log"))
    try:
        run(args, engine, target, out, qs, allq)
    finally:
        target.close()
        if config_path:
            os.unlink(config_path)


def run(args, engine: Engine, target, out: Outcomes, qs: list[str], allq: list[str]) -> None:
    for q in allq[:20]:  # warm-up: embedder, index, caches, the answer model
        target.search(q)
    target.ask("What is a list comprehension?")
    base = raw_baseline(engine, allq[args.skip:args.skip + args.baseline_n])
    print(line(f"baseline, raw embed + tantivy + hnswlib, {len(base)} of the same queries (this process)", base),
          flush=True)
    rss0 = rss_mib(target.pid)
    print(f"RSS of the {target.name} process (pid {target.pid}) after warm-up: {rss0:.0f} MiB", flush=True)
    every = max(1, len(qs) // args.answers) if args.answers else 0
    rng = random.Random(9)
    lat: list[float] = []
    ans_lat: list[float] = []
    win_ans: list[float] = []
    notes = 0
    t0 = time.perf_counter()
    for i, q in enumerate(qs, 1):
        t = time.perf_counter()
        target.search(q)
        lat.append((time.perf_counter() - t) * 1000)
        if every and i % every == 0 and len(ans_lat) < args.answers:
            question = f"What does the documentation say about {rng.choice(qs[1::2]) or 'lists'}?"
            t = time.perf_counter()
            notes += target.ask(question)
            ans_lat.append((time.perf_counter() - t) * 1000)
            win_ans.append(ans_lat[-1])
        if i % args.window == 0 or i == len(qs):
            w = lat[-(i - (i - 1) // args.window * args.window):]
            print(f"  searches {args.skip + (i - 1) // args.window * args.window + 1}-{args.skip + i}: "
                  f"p50 {pct(w, 50):.1f} p95 {pct(w, 95):.1f} p99 {pct(w, 99):.1f} ms; answers {len(win_ans)} "
                  f"p50 {pct(win_ans, 50):.0f} ms max {max(win_ans, default=float('nan')):.0f} ms; "
                  f"RSS {rss_mib(target.pid):.0f} MiB; errors {len(out.errors)}; "
                  f"load {load()}; {time.perf_counter() - t0:.0f}s", flush=True)
            win_ans = []
    while len(ans_lat) < args.answers:  # --searches 0: answers only
        t = time.perf_counter()
        notes += target.ask(f"What does the documentation say about {rng.choice(allq[1::2]) or 'lists'}?")
        ans_lat.append((time.perf_counter() - t) * 1000)
        if len(ans_lat) % 25 == 0:
            print(f"  answers {len(ans_lat) - 24}-{len(ans_lat)}: p50 {pct(ans_lat[-25:], 50):.0f} ms; "
                  f"RSS {rss_mib(target.pid):.0f} MiB; errors {len(out.errors)}; load {load()}", flush=True)
    if lat:
        print(line(f"{target.name} search x{len(lat)} in {time.perf_counter() - t0:.0f}s (answers included)", lat))
        print(f"ratio p50 {pct(lat, 50) / pct(base, 50):.2f}, p95 {pct(lat, 95) / pct(base, 95):.2f} "
              f"(search / raw baseline)")
    if ans_lat:
        print(line(f"{target.name} answers x{len(ans_lat)} (fast mode)", ans_lat) + f"; with notes {notes}")
    if args.concurrent_answers:
        concurrent(args, target, out, allq)
    rss1 = rss_mib(target.pid)
    print(f"RSS of the {target.name} process: after warm-up {rss0:.0f} MiB, end {rss1:.0f} MiB "
          f"({(rss1 - rss0) / rss0:+.1%})")
    print(f"errors {len(out.errors)}; Fathom's own errors for bad input: "
          f"{sum(out.refused.values())} {json.dumps(out.refused, ensure_ascii=False)}")
    print(f"GETs resent on a new connection after the server closed an idle keep-alive one: {out.stale}")
    for e in out.errors[:10]:
        print("  error:", e)
    print(f"load at end: {load()}")


def concurrent(args, target, out: Outcomes, allq: list[str]) -> None:
    """`--clients` threads search in a loop while this one asks `--concurrent-answers` answers."""
    stop = threading.Event()
    conc: list[float] = []
    lock = threading.Lock()
    before = len(out.errors)

    def client(seed: int) -> None:
        r = random.Random(seed)
        while not stop.is_set():
            t = time.perf_counter()
            target.search(r.choice(allq))
            with lock:
                conc.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=client, args=(s,)) for s in range(args.clients)]
    for th in threads:
        th.start()
    t, ans = time.perf_counter(), []
    for i in range(args.concurrent_answers):
        a = time.perf_counter()
        target.ask(f"What does the documentation say about {allq[2 * i + 1]}?")
        ans.append((time.perf_counter() - a) * 1000)
    stop.set()
    for th in threads:
        th.join()
    print(line(f"{args.clients} concurrent search clients during {args.concurrent_answers} answers "
               f"({time.perf_counter() - t:.0f}s)", conc) + f"; errors {len(out.errors) - before}")
    print(line("  the answers meanwhile", ans) + f"; load {load()}")


if __name__ == "__main__":
    main()
