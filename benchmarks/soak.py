"""Soak: many searches and answers through fathom.Engine, then concurrent search clients while
answers generate. Reports errors, p50/p95/p99 per window (over time) and RSS at start and end
(after warm-up: models loaded, first queries run). The raw baseline, measured in the same run,
is tantivy's BM25 alone on the same queries.

    flock /tmp/fathom-bench.lock python benchmarks/soak.py --data DIR [--searches 10000]
        [--answers 200] [--clients 8] [--concurrent-answers 10] [--model smollm2-135m]
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import threading
import time

from fathom.config import load_config
from fathom.engine import Engine
from synthesizer.config import AnswerConfig


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def line(name: str, xs: list[float]) -> str:
    return f"{name}: n={len(xs)} p50 {pct(xs, 50):.1f} ms, p95 {pct(xs, 95):.1f} ms, p99 {pct(xs, 99):.1f} ms"


def queries(engine: Engine, n: int, seed: int = 5) -> list[str]:
    """Questions made from the index's own headings and words, with some odd ones mixed in."""
    rng = random.Random(seed)
    chunks = list(engine.open_index().chunks.values())
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--searches", type=int, default=10_000)
    ap.add_argument("--answers", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--concurrent-answers", type=int, default=10)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rerank", action="store_true", help="search with the cross-encoder (default: off)")
    ap.add_argument("--window", type=int, default=1000)
    args = ap.parse_args()
    cfg = load_config(None)
    cfg = dataclasses.replace(cfg, answer=dataclasses.replace(
        cfg.answer, fast_model=args.model, slow_model=args.model))
    engine = Engine(args.data, cfg)
    print(f"load at start: {open('/proc/loadavg').read().strip()}")
    qs = queries(engine, args.searches)
    errors: list[str] = []

    def search(q: str) -> float:
        t = time.perf_counter()
        try:
            engine.search(q, k=10, rerank=args.rerank)
        except Exception as exc:  # every error counts, Fathom's own included
            errors.append(f"search {q[:30]!r}: {type(exc).__name__}: {exc}")
        return (time.perf_counter() - t) * 1000

    for q in qs[:20]:  # warm-up: embedder, index, caches
        search(q)
    engine.ask("warm up the model", mode="fast")
    rss0 = rss_mib()
    print(f"RSS after warm-up: {rss0:.0f} MiB; index {engine.open_index().manifest.chunks} chunks "
          f"({engine.open_index().manifest.pages} pages)")
    lex = engine.open_index().lexical
    base = []
    for q in qs:
        t = time.perf_counter()
        lex.search(q, 50)
        base.append((time.perf_counter() - t) * 1000)
    print(line("baseline tantivy BM25 alone", base))
    lat: list[float] = []
    t0 = time.perf_counter()
    for i, q in enumerate(qs, 1):
        lat.append(search(q))
        if i % args.window == 0:
            w = lat[-args.window:]
            print(f"  searches {i - args.window + 1}-{i}: p50 {pct(w, 50):.1f} p95 {pct(w, 95):.1f} "
                  f"p99 {pct(w, 99):.1f} ms; RSS {rss_mib():.0f} MiB; errors so far {len(errors)}")
    print(line(f"engine.search x{len(qs)} (rerank {'on' if args.rerank else 'off'}) in {time.perf_counter() - t0:.0f}s",
               lat))
    ans_lat, notes = [], 0
    rng = random.Random(9)
    for i in range(args.answers):
        q = rng.choice(qs[1::2]) or "what is this"
        t = time.perf_counter()
        try:
            a = engine.ask(f"What does the documentation say about {q}?", mode="fast")
            notes += bool(a.notes)
        except Exception as exc:
            errors.append(f"ask: {type(exc).__name__}: {exc}")
        ans_lat.append((time.perf_counter() - t) * 1000)
        if (i + 1) % 50 == 0:
            w = ans_lat[-50:]
            print(f"  answers {i - 48}-{i + 1}: p50 {pct(w, 50):.0f} p95 {pct(w, 95):.0f} ms; RSS {rss_mib():.0f} MiB")
    print(line(f"engine.ask x{args.answers} ({args.model}, fast mode)", ans_lat) + f"; answers with notes {notes}")
    # concurrent: clients search while answers generate
    stop = threading.Event()
    conc: list[float] = []
    lock = threading.Lock()
    conc_errors_before = len(errors)

    def client(seed: int) -> None:
        r = random.Random(seed)
        while not stop.is_set():
            ms = search(r.choice(qs))
            with lock:
                conc.append(ms)

    threads = [threading.Thread(target=client, args=(s,)) for s in range(args.clients)]
    for th in threads:
        th.start()
    t = time.perf_counter()
    for i in range(args.concurrent_answers):
        try:
            engine.ask(f"What does the documentation say about {qs[2 * i + 1]}?", mode="fast")
        except Exception as exc:
            errors.append(f"concurrent ask: {type(exc).__name__}: {exc}")
    stop.set()
    for th in threads:
        th.join()
    print(line(f"{args.clients} concurrent search clients during {args.concurrent_answers} answers "
               f"({time.perf_counter() - t:.0f}s)", conc) + f"; errors {len(errors) - conc_errors_before}")
    rss1 = rss_mib()
    print(f"RSS start {rss0:.0f} MiB, end {rss1:.0f} MiB ({(rss1 - rss0) / rss0:+.1%}); errors {len(errors)}")
    for e in errors[:10]:
        print("  error:", e)
    print(f"load at end: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
