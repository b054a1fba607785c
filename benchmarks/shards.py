"""Sharded index (issue 15): nDCG@10 on pg_qrels with 1 (baseline: the ordinary single index),
2 and 4 shards, and query latency, on a subset of the PostgreSQL docs.

The subset is the pages judged relevant for the first `--queries` qrels queries plus
`--distractors` other pages (the smallest files, to keep embedding cheap), copied into a
temporary directory and crawled from there. The single index embeds every chunk once; the
sharded builds read the same embedding cache (`index/embcache-MODEL.npz`) and embed nothing,
which the script checks. Only queries whose relevant pages are all in the subset are scored.

    flock /tmp/fathom-bench.lock nice -n 5 python benchmarks/shards.py [--queries 150] [--distractors 60]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fathom.config import Config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from indexer.embedding import load_embedder  # noqa: E402
from retriever.evaluation import Judged, evaluate  # noqa: E402

PG = "/usr/share/doc/postgresql-doc-15/html"
QRELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "eval",
                     "pg_qrels.dev.jsonl")  # ../shared beside the clone


def pick(qrels: str, queries: int, distractors: int) -> tuple[list[Judged], list[str]]:
    rows = [json.loads(line) for line in open(qrels)][:queries]
    judged = [Judged(r["qid"], r["query"], frozenset(r["relevant"])) for r in rows
              if all(os.path.exists(os.path.join(PG, p)) for p in r["relevant"])]
    pages = sorted({p for j in judged for p in j.relevant})
    others = sorted((f for f in os.listdir(PG) if f.endswith(".html") and f not in pages),
                    key=lambda f: os.path.getsize(os.path.join(PG, f)))[:distractors]
    return judged, pages + others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qrels", default=QRELS)
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--distractors", type=int, default=60)
    ap.add_argument("--shards", default="2,4")
    ap.add_argument("--data", default=None, help="keep the data dirs here (default: a temp dir)")
    args = ap.parse_args()
    load = [open("/proc/loadavg").read().split()[:3]]
    judged, files = pick(args.qrels, args.queries, args.distractors)
    work = args.data or tempfile.mkdtemp(prefix="fathom-shards-")
    site = os.path.join(work, "site")
    os.makedirs(site, exist_ok=True)
    for f in files:
        shutil.copy(os.path.join(PG, f), os.path.join(site, f))
    embedder = load_embedder(Config().index.embedder)
    single = Engine(os.path.join(work, "single"), embedder=embedder)
    crawl = single.crawl([site])
    t0 = time.monotonic()
    base = single.index()
    base_s = time.monotonic() - t0
    rows = []

    def measure(name: str, engine: Engine, build_s: float, embedded: int) -> None:
        retriever = engine.retriever()

        def run(engines):
            return lambda q: [h.url for h in retriever.search(q, k=10, max_per_page=1, engines=engines).hits]
        res = {e: evaluate(run(e), judged, e, 10) for e in ("hybrid", "bm25", "dense")}
        rows.append({"index": name, "build_s": round(build_s, 1), "embedded": embedded,
                     **{f"ndcg_{e}": r.ndcg_at_10 for e, r in res.items()},
                     "query_p50_ms": res["hybrid"].p50_ms})

    measure("single (baseline)", single, base_s, base.embedded)
    for n in [int(x) for x in args.shards.split(",")]:
        data = os.path.join(work, f"shards{n}")
        os.makedirs(os.path.join(data, "index"), exist_ok=True)
        shutil.copy(single.store_path, os.path.join(data, "crawl.duckdb"))
        for name in os.listdir(single.index_root):
            if name.startswith("embcache-"):
                shutil.copy(os.path.join(single.index_root, name), os.path.join(data, "index", name))
        engine = Engine(data, embedder=embedder)
        t0 = time.monotonic()
        report = engine.index(shards=n)
        measure(f"{n} shards", engine, time.monotonic() - t0, report.embedded)
        assert report.embedded == 0, "sharded build re-embedded chunks"
    load.append(open("/proc/loadavg").read().split()[:3])
    print(f"subset: {crawl.new} pages ({len(files)} files), {base.chunks} chunks, {len(judged)} judged queries "
          f"(first {args.queries} of pg_qrels.dev.jsonl); loadavg {load[0]} -> {load[1]}")
    print("| index | build s | chunks embedded | nDCG@10 hybrid | bm25 | dense | Δ hybrid vs single | query p50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['index']} | {r['build_s']} | {r['embedded']} | {r['ndcg_hybrid']:.4f} | {r['ndcg_bm25']:.4f} | "
              f"{r['ndcg_dense']:.4f} | {r['ndcg_hybrid'] - rows[0]['ndcg_hybrid']:+.4f} | {r['query_p50_ms']} |")
    if not args.data:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
