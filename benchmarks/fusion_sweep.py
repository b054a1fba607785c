"""Sweep fusion settings across several sites on cached candidate lists.

    flock /tmp/fathom-bench.lock .venv/bin/python benchmarks/fusion_sweep.py \\
        --site /tmp/pg ../shared/eval/pg_qrels.dev.jsonl --site /tmp/sphinx benchmarks/data/sphinx_qrels.jsonl \\
        [--limit 400] [--offset 0]

Each --site is a data dir with a built index (current code: it has the page index) and its
qrels file. For the queries [offset, offset+limit) of each site, the candidate lists are taken
once: chunk BM25 (tantivy, 200 deep, under each field-boost variant), dense (hnswlib, 200 deep)
and page BM25 (100 deep, under each page-field variant). Every combination of RRF k, candidate
depth, the three weights and the boost variants is then scored offline (page-level nDCG@10, as
`fathom eval`), per site and as the mean over sites. Prints the best settings by mean and the
current defaults for reference; --json writes every row."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from fathom.config import load_config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from indexer import lexical as lexical_mod  # noqa: E402
from retriever.evaluation import load_judged, page_path, score  # noqa: E402
from retriever.fusion import reciprocal_rank_fusion  # noqa: E402

CHUNK_BOOSTS = {"t2h1.5": {"title": 2.0, "heading": 1.5, "body": 1.0},
                "t1h1": {"title": 1.0, "heading": 1.0, "body": 1.0},
                "t1h1.5": {"title": 1.0, "heading": 1.5, "body": 1.0}}
PAGE_VARIANTS = {"plain": {"title": 2.0, "body": 1.0},
                 "t1h1": {"title": 1.0, "headings": 1.0, "body": 1.0},
                 "t1h1u1": {"title": 1.0, "headings": 1.0, "urlwords": 1.0, "body": 1.0}}


def chunk_search(lex, query: str, n: int, boosts: dict) -> list[int]:
    terms = lexical_mod.query_terms(query)
    if not terms:
        return []
    q, _ = lex.index.parse_query_lenient(" ".join(terms), list(lexical_mod.TEXT_FIELDS), field_boosts=boosts)
    res = lex.searcher.search(q, n)
    return [int(lex.searcher.doc(a)["chunk_id"][0]) for _, a in res.hits]


def collect(data: str, qrels: str, limit: int, offset: int, config) -> dict:
    engine = Engine(data, config)
    index = engine.open_index()
    emb = engine.embedder
    judged = load_judged(qrels, offset + limit)[offset:]
    rows = []
    for j in judged:
        row = {"rel": j.relevant, "chunk": {}, "page": {}}
        for name, b in CHUNK_BOOSTS.items():
            row["chunk"][name] = chunk_search(index.lexical, j.query, 200, b)
        qv = np.asarray(emb.embed_query(j.query), np.float32).reshape(1, -1)
        labels, _ = index.dense.knn_query(qv, k=min(200, index.dense.get_current_count()))
        row["dense"] = [int(x) for x in labels[0]]
        for name, b in PAGE_VARIANTS.items():
            row["page"][name] = [u for u, _ in index.pages.search(j.query, 100, b)]
        rows.append(row)
    url_of = {cid: c.url for cid, c in index.chunks.items()}
    return {"rows": rows, "url_of": url_of}


def ndcg(site: dict, s: dict) -> float:
    url_of, vals = site["url_of"], []
    for row in site["rows"]:
        lists, weights = [], []
        if s["bm25_w"] > 0:
            lists.append(row["chunk"][s["chunk_boosts"]][:s["depth"]])
            weights.append(s["bm25_w"])
        if s["dense_w"] > 0:
            lists.append(row["dense"][:s["depth"]])
            weights.append(s["dense_w"])
        fused = reciprocal_rank_fusion(lists, s["k"], weights)
        page_score: dict[str, float] = {}
        second: dict[str, float] = {}
        for cid, sc in fused.items():
            u = url_of[cid]
            if sc > page_score.get(u, 0.0):
                second[u], page_score[u] = page_score.get(u, 0.0), sc
            else:
                second[u] = max(second.get(u, 0.0), sc)
        if s.get("support", 0.0) > 0:  # the page's second-best candidate chunk adds to its best one
            for u in page_score:
                page_score[u] += s["support"] * second.get(u, 0.0)
        if s["page_w"] > 0:
            for r, u in enumerate(row["page"][s["page_fields"]][:s["page_depth"]], start=1):
                page_score[u] = page_score.get(u, 0.0) + s["page_w"] / (s["k"] + r)
        ranked = sorted(page_score, key=lambda u: -page_score[u])[:10]
        vals.append(score([page_path(u) for u in ranked], row["rel"])["ndcg"])
    return statistics.fmean(vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", nargs=2, action="append", metavar=("DATA", "QRELS"), required=True)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--config", default=None)
    ap.add_argument("--json", default="")
    ap.add_argument("--write-config", default="", help="write the best setting by mean as a TOML [retrieve] table")
    args = ap.parse_args()
    config = load_config(args.config)
    sites = {}
    for data, qrels in args.site:
        name = os.path.basename(qrels).split("_")[0].split(".")[0]
        name = name if name not in sites else f"{name}{len(sites) + 1}"
        sites[name] = collect(data, qrels, args.limit, args.offset, config)
        print(f"{name}: {len(sites[name]['rows'])} queries collected", flush=True)
    keys = ("k", "depth", "bm25_w", "dense_w", "page_w", "page_depth", "chunk_boosts", "page_fields")
    base = {"k": 60, "depth": 100, "bm25_w": 1.0, "dense_w": 1.0, "page_w": 1.0, "page_depth": 50,
            "chunk_boosts": "t2h1.5", "page_fields": "t1h1"}
    # stage 1: fusion constants with the default field boosts
    grid = [dict(zip(keys, v)) for v in itertools.product(
        (10, 30, 60), (50, 100, 200), (0.0, 0.5, 1.0), (1.0, 1.5), (0.0, 0.5, 1.0, 1.5, 2.0), (50, 100),
        ("t2h1.5",), ("t1h1",))]
    grid = [g for g in grid if not (g["page_w"] == 0 and g["page_depth"] != 50) and (g["bm25_w"] or g["page_w"])]
    singles = [{**base, "label": label, **over} for label, over in (
        ("bm25 (chunks)", {"dense_w": 0.0, "page_w": 0.0}),
        ("dense", {"bm25_w": 0.0, "page_w": 0.0}),
        ("page BM25 (title x2 + body)", {"bm25_w": 0.0, "dense_w": 0.0, "page_depth": 100, "page_fields": "plain"}),
        ("naive: page BM25 + dense, RRF 60", {"bm25_w": 0.0, "page_depth": 100, "page_fields": "plain"}),
        ("hybrid before issue 14", {"page_w": 0.0}),
        ("hybrid, issue 14 defaults", {"k": 30, "depth": 200, "bm25_w": 0.5, "page_w": 1.0, "page_depth": 50,
                                       "page_fields": "t1h1"}))]

    def run(settings):
        rows = []
        for g in settings:
            per = {n: round(ndcg(site, g), 4) for n, site in sites.items()}
            rows.append({**g, **per, "mean": round(statistics.fmean(per.values()), 4)})
        return rows

    fixed, stage1 = run(singles), run(grid)
    best = max(stage1, key=lambda r: r["mean"])
    # stage 2: field boosts of the chunk and page queries around the best stage-1 setting
    stage2 = run([{**{k: best[k] for k in keys}, "chunk_boosts": cb, "page_fields": pf, "page_w": pw}
                  for cb in CHUNK_BOOSTS for pf in PAGE_VARIANTS for pw in (best["page_w"], 1.0)])
    # stage 3: page support (a page's second-best candidate chunk adds `support` x its fused score)
    # around the best so far and around the defaults
    top2 = max(stage1 + stage2, key=lambda r: r["mean"])
    current = next(r for r in fixed if r["label"] == "hybrid, issue 14 defaults")
    stage3 = run([{**{k: ref[k] for k in keys}, "support": sup} for ref in (top2, current)
                  for sup in (0.0, 0.1, 0.25, 0.5, 1.0)])
    out = fixed + stage1 + stage2 + stage3
    names = list(sites)
    print(f"{'setting':<70} " + " ".join(f"{n:>7}" for n in names) + f" {'mean':>7}")
    for r in fixed:
        print(f"{r['label']:<70} " + " ".join(f"{r[n]:>7.4f}" for n in names) + f" {r['mean']:>7.4f}")
    print("best 15 by mean (stage 1 then stage 2):")
    for r in sorted(stage1, key=lambda r: -r["mean"])[:15] + sorted(stage2, key=lambda r: -r["mean"])[:10]:
        label = (f"k={r['k']} depth={r['depth']} bm25={r['bm25_w']} dense={r['dense_w']} page={r['page_w']}"
                 f"@{r['page_depth']} {r['chunk_boosts']} {r['page_fields']}")
        print(f"{label:<70} " + " ".join(f"{r[n]:>7.4f}" for n in names) + f" {r['mean']:>7.4f}")
    print("stage 3, page support (first five around the best, then around the defaults):")
    for r in stage3:
        label = (f"k={r['k']} depth={r['depth']} bm25={r['bm25_w']} dense={r['dense_w']} page={r['page_w']}"
                 f"@{r['page_depth']} {r['chunk_boosts']} {r['page_fields']} support={r['support']}")
        print(f"{label:<70} " + " ".join(f"{r[n]:>7.4f}" for n in names) + f" {r['mean']:>7.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)
    if args.write_config:
        top = max(stage1 + stage2, key=lambda r: r["mean"])
        cb, pf = CHUNK_BOOSTS[top["chunk_boosts"]], PAGE_VARIANTS[top["page_fields"]]
        values = {"rrf_k": top["k"], "bm25_candidates": top["depth"] if top["bm25_w"] else 0,
                  "dense_candidates": top["depth"], "bm25_weight": top["bm25_w"], "dense_weight": top["dense_w"],
                  "title_boost": cb["title"], "heading_boost": cb["heading"], "page_weight": top["page_w"],
                  "page_candidates": top["page_depth"], "page_title_boost": pf.get("title", 0.0),
                  "page_heading_boost": pf.get("headings", 0.0), "page_url_boost": pf.get("urlwords", 0.0)}
        with open(args.write_config, "w") as f:
            f.write(f"# best mean nDCG@10 {top['mean']} over {', '.join(names)} (benchmarks/fusion_sweep.py)\n[retrieve]\n")
            f.writelines(f"{k} = {float(v) if isinstance(v, float) else v}\n" for k, v in values.items())
        print(f"wrote {args.write_config}")


if __name__ == "__main__":
    main()
