"""Query latency of the hybrid search path vs its raw parts on the same index.

    .venv/bin/python benchmarks/query.py --data DIR --queries ../shared/eval/pg_qrels.dev.jsonl [-n 300]

Ours: Engine.search (query embedding + tantivy + hnswlib + fusion + page collapse + snippets).
Raw, in the same run on the same index: one raw embed_query, one raw tantivy search (50 hits,
stored chunk_id read back), one raw hnswlib knn_query (k=50). Prints p50/p95 of each, the ratio
ours / (sum of raw parts), and throughput with 4 concurrent clients (threads)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fathom.engine import Engine  # noqa: E402
from indexer.lexical import TEXT_FIELDS, query_terms  # noqa: E402
from retriever.evaluation import load_judged  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def timed(fn, items) -> list[float]:
    out = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    engine = Engine(args.data)
    queries = [j.query for j in load_judged(args.queries, args.n)]
    index = engine.open_index()
    emb = engine.embedder
    for q in queries[:10]:  # warm-up
        engine.search(q)
    lex = index.lexical

    def raw_bm25(q):
        query, _ = lex.index.parse_query_lenient(" ".join(query_terms(q)), list(TEXT_FIELDS))
        res = lex.searcher.search(query, 50)
        return [lex.searcher.doc(a)["chunk_id"][0] for _, a in res.hits]

    vecs = {q: emb.embed_query(q) for q in queries}
    parts = (("ours", lambda q: engine.search(q)), ("raw_embed", emb.embed_query), ("raw_tantivy", raw_bm25),
             ("raw_hnsw", lambda q: index.dense.knn_query(vecs[q], k=50)))
    rounds: dict[str, list[float]] = {name: [] for name, _ in parts}
    for q in queries:  # interleaved per query, so load changes hit ours and the raw parts alike
        for name, fn in parts:
            rounds[name].extend(timed(fn, [q]))
    raw_sum = [a + b + c for a, b, c in zip(rounds["raw_embed"], rounds["raw_tantivy"], rounds["raw_hnsw"])]
    t = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(lambda q: engine.search(q), queries))
    qps_concurrent = len(queries) / (time.perf_counter() - t)
    result = {
        "index_chunks": len(index.chunks), "queries": len(queries),
        **{f"{k}_p50_ms": round(statistics.median(v), 2) for k, v in rounds.items()},
        **{f"{k}_p95_ms": round(pct(v, 0.95), 2) for k, v in rounds.items()},
        "raw_sum_p50_ms": round(statistics.median(raw_sum), 2), "raw_sum_p95_ms": round(pct(raw_sum, 0.95), 2),
        "ratio_p50": round(statistics.median(rounds["ours"]) / statistics.median(raw_sum), 3),
        "qps_1_client": round(len(queries) / (sum(rounds["ours"]) / 1000), 1),
        f"qps_{args.clients}_clients": round(qps_concurrent, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
