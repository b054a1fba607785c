"""Re-tune the rerank mix across sites on cached cross-encoder scores.

    flock /tmp/fathom-bench.lock .venv/bin/python benchmarks/rerank_mix.py \\
        --site /tmp/pg ../shared/eval/pg_qrels.dev.jsonl --site /tmp/sphinx benchmarks/data/sphinx_qrels.jsonl \\
        [--limit 150] [--offset 0] [--candidates 30] [--cache DIR]

For queries [offset, offset+limit) of each site, the hybrid search (current config, one chunk
per page) gives --candidates pages; the cross-encoder scores all of them once. Then, offline:
no rerank, the cross-encoder's order alone over the top N, and the RRF of fused rank and
cross-encoder rank (weight w, constant k) over the top N, scored by page-level nDCG@10 per
site and as the mean over sites. With --cache DIR each site's scored lists are kept in
DIR/NAME-OFFSET-LIMIT-CANDIDATES.json and read back on the next run, so the sites can be scored
one lock acquisition at a time and then mixed together."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fathom.config import load_config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from retriever.evaluation import load_judged, page_path, score  # noqa: E402
from retriever.rerank import load_reranker  # noqa: E402


def collect(data: str, qrels: str, limit: int, offset: int, config, n: int) -> list[dict]:
    engine = Engine(data, config)
    retriever = engine.retriever()
    index = engine.open_index()
    model = load_reranker(config.retrieve.rerank_threads, config.retrieve.rerank_max_tokens)
    rows = []
    for j in load_judged(qrels, offset + limit)[offset:]:
        hits = retriever.search(j.query, k=n, max_per_page=1, rerank=False).hits
        scores = model.score(j.query, [index.chunks[h.chunk_id].embed_text() for h in hits])
        rows.append({"rel": j.relevant, "urls": [h.url for h in hits], "ce": [float(s) for s in scores]})
    return rows


def mixed(row: dict, top: int, weight: float | None, k: int) -> list[str]:
    n = min(top, len(row["urls"]))
    ce_rank = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: -row["ce"][i]), start=1)}
    if weight is None:  # cross-encoder order alone
        order = sorted(range(n), key=lambda i: ce_rank[i])
    else:
        order = sorted(range(n), key=lambda i: -(1 / (k + i + 1) + weight / (k + ce_rank[i])))
    return [row["urls"][i] for i in order] + row["urls"][n:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", nargs=2, action="append", metavar=("DATA", "QRELS"), required=True)
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=30)
    ap.add_argument("--config", default=None)
    ap.add_argument("--cache", default="", help="directory keeping each site's scored candidate lists")
    args = ap.parse_args()
    config = load_config(args.config)
    sites = {}
    for data, qrels in args.site:
        name = os.path.basename(qrels).split("_")[0].split(".")[0]
        cached = os.path.join(args.cache, f"{name}-{args.offset}-{args.limit}-{args.candidates}.json")
        if args.cache and os.path.exists(cached):
            with open(cached, encoding="utf-8") as f:
                sites[name] = [{**r, "rel": frozenset(r["rel"])} for r in json.load(f)]
            print(f"{name}: {len(sites[name])} queries read from {cached}", flush=True)
            continue
        sites[name] = collect(data, qrels, args.limit, args.offset, config, args.candidates)
        print(f"{name}: {len(sites[name])} queries scored", flush=True)
        if args.cache:
            os.makedirs(args.cache, exist_ok=True)
            with open(cached, "w", encoding="utf-8") as f:
                json.dump([{**r, "rel": sorted(r["rel"])} for r in sites[name]], f)

    def nd(rows, f):
        return statistics.fmean(score([page_path(u) for u in f(r)][:10], r["rel"])["ndcg"] for r in rows)

    settings = [("no rerank", lambda r: r["urls"])]
    for top in (10, 20, 30):
        settings.append((f"cross-encoder alone, top {top}", lambda r, t=top: mixed(r, t, None, 60)))
    for top, w, k in itertools.product((10, 20, 30), (0.5, 1.0, 2.0), (10, 30, 60)):
        settings.append((f"RRF fused+CE top {top} w={w} k={k}", lambda r, t=top, w=w, k=k: mixed(r, t, w, k)))
    names = list(sites)
    print(f"{'setting':<40}" + "".join(f"{n:>8}" for n in names) + "    mean")
    results = []
    for label, f in settings:
        vals = [nd(sites[n], f) for n in names]
        results.append((label, vals, statistics.fmean(vals)))
    for label, vals, mean in results[:4] + sorted(results[4:], key=lambda x: -x[2])[:12]:
        print(f"{label:<40}" + "".join(f"{v:8.4f}" for v in vals) + f"{mean:8.4f}")


if __name__ == "__main__":
    main()
