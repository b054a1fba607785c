"""Sharded index (issue 15): nDCG@10 on pg_qrels with 1, 2 and 4 shards against the ordinary
single index (the baseline), and query latency.

With `--single DATA` (a data dir holding a crawl of the whole PostgreSQL docs and its built
single index), the shards are built from a copy of that store and its embedding cache (they
embed nothing: the script checks) and every query of `--qrels` (or the first `--limit`) is
scored on each layout. The baseline is the single index in DATA, evaluated in the same run.

    flock /tmp/fathom-bench.lock nice -n 5 python benchmarks/shards.py --single /tmp/pg --data /tmp/pg-shards

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
from indexer.shards import build_shards, read_shard_manifest  # noqa: E402
from retriever.evaluation import Judged, evaluate, load_judged  # noqa: E402

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
    ap.add_argument("--queries", type=int, default=150, help="subset mode: qrels queries whose pages are copied")
    ap.add_argument("--distractors", type=int, default=60, help="subset mode: other pages copied")
    ap.add_argument("--single", default=None, help="a data dir with a whole-site crawl and its built single index")
    ap.add_argument("--limit", type=int, default=None, help="with --single: score the first N queries only")
    ap.add_argument("--shards", default="2,4", help="shard counts; 1 is a one-shard fan-out, not the single index")
    ap.add_argument("--engines", default="hybrid,bm25,dense")
    ap.add_argument("--reuse", action="store_true", help="keep shard builds already in --data")
    ap.add_argument("--data", default=None, help="keep the data dirs here (default: a temp dir)")
    args = ap.parse_args()
    load = [open("/proc/loadavg").read().split()[:3]]
    work = args.data or tempfile.mkdtemp(prefix="fathom-shards-")
    embedder = load_embedder(Config().index.embedder)
    if args.single:
        judged = load_judged(args.qrels, args.limit)
        single = Engine(args.single, embedder=embedder)
        base_s, embedded = single.status().to_dict()["index"].get("build_s", 0.0), 0
        what = f"whole store of {args.single}, {len(judged)} queries of {os.path.basename(args.qrels)}"
    else:
        judged, files = pick(args.qrels, args.queries, args.distractors)
        site = os.path.join(work, "site")
        os.makedirs(site, exist_ok=True)
        for f in files:
            shutil.copy(os.path.join(PG, f), os.path.join(site, f))
        single = Engine(os.path.join(work, "single"), embedder=embedder)
        crawl = single.crawl([site])
        t0 = time.monotonic()
        base = single.index()
        base_s, embedded = time.monotonic() - t0, base.embedded
        what = (f"subset: {crawl.new} pages ({len(files)} files), {len(judged)} judged queries "
                f"(first {args.queries} of {os.path.basename(args.qrels)})")
    engines = args.engines.split(",")
    rows = []

    def measure(name: str, engine: Engine, build_s: float, embedded: int) -> None:
        retriever = engine.retriever()

        def run(e):
            return lambda q: [h.url for h in retriever.search(q, k=10, max_per_page=1, engines=e).hits]
        res = {e: evaluate(run(e), judged, e, 10) for e in engines}
        rows.append({"index": name, "build_s": round(build_s, 1), "embedded": embedded, "res": res,
                     "chunks": len(engine.open_index())})
        print(f"{name}: " + ", ".join(f"{e} {r.ndcg_at_10:.4f}" for e, r in res.items()), flush=True)

    measure("single (baseline)", single, base_s, embedded)
    for n in [int(x) for x in args.shards.split(",")]:
        data = os.path.join(work, f"shards{n}")
        engine = Engine(data, embedder=embedder)
        manifest = read_shard_manifest(engine.index_root) if os.path.isdir(engine.index_root) else None
        if args.reuse and manifest is not None and manifest.shards == n:
            measure(f"{n} shard{'s' * (n > 1)}", engine, 0.0, 0)
            continue
        os.makedirs(os.path.join(data, "index"), exist_ok=True)
        shutil.copy(single.store_path, os.path.join(data, "crawl.duckdb"))
        for name in os.listdir(single.index_root):
            if name.startswith("embcache-"):
                shutil.copy(os.path.join(single.index_root, name), os.path.join(data, "index", name))
        t0 = time.monotonic()
        if n == 1:  # Engine.index(shards=1) means "one ordinary index"; build a one-shard layout directly
            from fathom.engine import _pages_of
            reports = build_shards(lambda: _pages_of([engine.store_path]), engine.index_root, engine.config.index,
                                   embedder, 1)
            embedded_n = sum(r.embedded for r in reports)
        else:
            embedded_n = engine.index(shards=n).embedded
        measure(f"{n} shard{'s' * (n > 1)}", engine, time.monotonic() - t0, embedded_n)
        assert embedded_n == 0, "sharded build re-embedded chunks"
    load.append(open("/proc/loadavg").read().split()[:3])
    base_rows = rows[0]["res"]
    print(f"{what}; {rows[0]['chunks']} chunks; loadavg {load[0]} -> {load[1]}")
    print("| index | build s | chunks embedded | " + " | ".join(f"nDCG@10 {e}" for e in engines)
          + f" | Δ {engines[0]} vs single | queries whose nDCG@10 changed | R@10 | MRR@10 | query p50 ms |")
    print("|---|---|---|" + "---|" * len(engines) + "---|---|---|---|---|")
    for r in rows:
        main_e = engines[0]
        a, b = base_rows[main_e].per_query, r["res"][main_e].per_query
        changed = sum(1 for x, y in zip(a, b) if abs(x["ndcg"] - y["ndcg"]) > 1e-9)
        print(f"| {r['index']} | {r['build_s']} | {r['embedded']} | "
              + " | ".join(f"{r['res'][e].ndcg_at_10:.4f}" for e in engines)
              + f" | {r['res'][main_e].ndcg_at_10 - base_rows[main_e].ndcg_at_10:+.4f} | {changed} | "
              f"{r['res'][main_e].recall_at_10:.4f} | {r['res'][main_e].mrr_at_10:.4f} | {r['res'][main_e].p50_ms} |")
    if not args.data:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
