"""Dense pseudo-relevance feedback on top of hybrid fusion, scored on cached candidate lists.

    .venv/bin/python benchmarks/prf_sweep.py --cache /tmp/s5/sweep.pkl \\
        --site /tmp/s5/pg ../shared/eval/pg_qrels.dev.jsonl --site /tmp/s5/sphinx benchmarks/data/sphinx_qrels.jsonl ...

For each query, the hybrid ranking under the current defaults is computed from the lists that
`benchmarks/fusion_sweep.py --cache` collected. The query vector is then moved toward the mean
vector of the best `m` fused chunks (Rocchio: q' = q + beta * mean, normalised), hnswlib is
searched again with q', and that second dense list is fused in (replacing the first dense list,
or beside it with its own weight). Settings are chosen on the even-numbered queries of each site
and reported on the odd ones as well (held out)."""
from __future__ import annotations

import argparse
import itertools
import os
import pickle
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from fathom.config import load_config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from retriever.evaluation import load_judged, page_path, score  # noqa: E402
from retriever.fusion import reciprocal_rank_fusion  # noqa: E402

DEFAULT = {"k": 30, "depth": 200, "bm25_w": 0.25, "dense_w": 1.0, "page_w": 1.0, "page_depth": 100,
           "chunk_boosts": "t1h1.5", "page_fields": "t1h1", "support": 0.1}


def fused_chunks(row: dict, s: dict, dense2: list[int] | None = None, w2: float = 0.0, replace: bool = False) -> dict:
    """Chunk-level fused scores (chunk BM25, dense, optional second dense list), with page support."""
    lists = [row["chunk"][s["chunk_boosts"]][:s["depth"]], (dense2 if replace else row["dense"])[:s["depth"]]]
    weights = [s["bm25_w"], s["dense_w"]]
    if dense2 is not None and not replace and w2 > 0:
        lists.append(dense2[:s["depth"]])
        weights.append(w2)
    return reciprocal_rank_fusion(lists, s["k"], weights)


def ranked_pages(row: dict, url_of: dict, s: dict, **kw) -> tuple[list[str], list[int]]:
    """The 10 best pages, and the best chunk of each in fused order (for feedback)."""
    fused = fused_chunks(row, s, **kw)
    best: dict[str, tuple[float, int]] = {}
    second: dict[str, float] = {}
    for cid, sc in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0])):
        u = url_of[cid]
        if u not in best:
            best[u] = (sc, cid)
        elif u not in second:
            second[u] = sc
    page_score = {u: sc + s["support"] * second.get(u, 0.0) for u, (sc, _) in best.items()}
    for r, u in enumerate(row["page"][s["page_fields"]][:s["page_depth"]], start=1):
        page_score[u] = page_score.get(u, 0.0) + s["page_w"] / (s["k"] + r)
    order = sorted(page_score, key=lambda u: -page_score[u])
    return order[:10], [best[u][1] for u in order if u in best]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", nargs=2, action="append", metavar=("DATA", "QRELS"), required=True)
    ap.add_argument("--cache", required=True, help="fusion_sweep.py's pickle of candidate lists")
    ap.add_argument("--vec-cache", default="", help="pickle of query vectors and feedback lists, reused")
    args = ap.parse_args()
    with open(args.cache, "rb") as f:
        sites = pickle.load(f)
    config = load_config(None)
    ms, betas = (1, 3, 5), (0.25, 0.5, 1.0)
    extra = {}
    if args.vec_cache and os.path.exists(args.vec_cache):
        with open(args.vec_cache, "rb") as f:
            extra = pickle.load(f)
    for data, qrels in args.site:
        name = os.path.basename(qrels).split("_")[0].split(".")[0]
        if name in extra:
            continue
        site = sites[name]
        engine = Engine(data, config)
        index = engine.open_index()
        judged = load_judged(qrels, len(site["rows"]))
        assert len(judged) == len(site["rows"])
        out = []
        for j, row in zip(judged, site["rows"]):
            q = np.asarray(engine.embedder.embed_query(j.query), np.float32)
            q /= max(float(np.linalg.norm(q)), 1e-12)
            _, top = ranked_pages(row, site["url_of"], DEFAULT)
            lists = {}
            for m, beta in itertools.product(ms, betas):
                if not top:
                    lists[(m, beta)] = row["dense"]
                    continue
                v = np.asarray(index.dense.get_items(top[:m]), np.float32).mean(axis=0)
                q2 = q + beta * v / max(float(np.linalg.norm(v)), 1e-12)
                labels, _ = index.dense.knn_query(q2.reshape(1, -1), k=min(200, index.dense.get_current_count()))
                lists[(m, beta)] = [int(x) for x in labels[0]]
            out.append(lists)
        extra[name] = out
        print(f"{name}: feedback lists for {len(out)} queries", flush=True)
        if args.vec_cache:
            with open(args.vec_cache, "wb") as f:
                pickle.dump(extra, f)

    def nd(name: str, part: int, key=None, **kw) -> float:
        """Mean nDCG@10 over the even (part 0) or odd (part 1) queries of a site."""
        site = sites[name]
        vals = []
        for i in range(part, len(site["rows"]), 2):
            row = site["rows"][i]
            opts = {"dense2": extra[name][i][key], **kw} if key is not None else {}
            pages, _ = ranked_pages(row, site["url_of"], DEFAULT, **opts)
            vals.append(score([page_path(u) for u in pages], row["rel"])["ndcg"])
        return statistics.fmean(vals)

    names = [n for n in extra]
    settings = [("defaults (no feedback)", {})]
    for m, beta in itertools.product(ms, betas):
        settings.append((f"replace dense: m={m} beta={beta}", {"key": (m, beta), "replace": True}))
        for w2 in (0.5, 1.0):
            settings.append((f"add dense2 x{w2}: m={m} beta={beta}", {"key": (m, beta), "w2": w2}))
    rows = []
    for label, kw in settings:
        tune = {n: nd(n, 0, **kw) for n in names}
        held = {n: nd(n, 1, **kw) for n in names}
        rows.append((label, tune, held))
    print(f"{'setting (tune = even queries / held = odd)':<44} " + " ".join(f"{n:>15}" for n in names) + f" {'mean':>15}")
    base = rows[0]
    for label, tune, held in [base] + sorted(rows[1:], key=lambda r: -statistics.fmean(r[1].values()))[:12]:
        print(f"{label:<44} " + " ".join(f"{tune[n]:.4f} / {held[n]:.4f}" for n in names)
              + f" {statistics.fmean(tune.values()):.4f} / {statistics.fmean(held.values()):.4f}")


if __name__ == "__main__":
    main()
