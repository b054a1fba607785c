"""Sweep fusion settings across several sites on cached candidate lists.

    flock /tmp/fathom-bench.lock .venv/bin/python benchmarks/fusion_sweep.py \\
        --site /tmp/pg ../shared/eval/pg_qrels.dev.jsonl --site /tmp/sphinx benchmarks/data/sphinx_qrels.jsonl \\
        [--limit 400] [--offset 0] [--holdout]

Each --site is a data dir with a built index (current code: it has the page index) and its
qrels file. For the queries [offset, offset+limit) of each site, the candidate lists are taken
once: chunk BM25 (tantivy, 200 deep, under each field-boost variant), dense (hnswlib, 200 deep)
and page BM25 (100 deep, under each page-field variant). Every combination of RRF k, candidate
depth, the three weights and the boost variants is then scored offline (page-level nDCG@10, as
`fathom eval`), per site and as the mean over sites. Prints the best settings by mean and the
current defaults for reference; --json writes every row.

Two further lists can be tried: dense page vectors (the normalised mean of a page's chunk
vectors, 100 deep: "pdense") and page-level fusion ("page_rrf": each chunk list is cut to its
pages' first appearances before RRF, as one ranked list of pages). With --holdout, settings are
chosen on the even-numbered queries of each site and every printed figure is also given on the
odd-numbered ones (columns marked "/held")."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
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
    page_urls, page_vecs = page_vectors(index)
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
        sims = page_vecs @ qv[0]
        row["pdense"] = [page_urls[i] for i in np.argsort(-sims)[:100]]
        rows.append(row)
    url_of = {cid: c.url for cid, c in index.chunks.items()}
    return {"rows": rows, "url_of": url_of}


def page_vectors(index) -> tuple[list[str], np.ndarray]:
    """Each page's normalised mean chunk vector (from the loaded HNSW index)."""
    urls = sorted(index.page_chunks)
    vecs = np.zeros((len(urls), index.manifest.embedder_dim), np.float32)
    for i, url in enumerate(urls):
        v = np.asarray(index.dense.get_items(index.page_chunks[url]), np.float32).mean(axis=0)
        vecs[i] = v / max(float(np.linalg.norm(v)), 1e-12)
    return urls, vecs


def _pages_of(chunks: list[int], url_of: dict) -> list[str]:
    seen: dict[str, None] = {}
    for cid in chunks:
        seen.setdefault(url_of[cid], None)
    return list(seen)


def ranked_pages(row: dict, url_of: dict, s: dict) -> list[str]:
    """The 10 best pages of one query under setting `s`."""
    if s.get("page_rrf"):
        lists, weights = [], []
        if s["bm25_w"] > 0:
            lists.append(_pages_of(row["chunk"][s["chunk_boosts"]][:s["depth"]], url_of))
            weights.append(s["bm25_w"])
        if s["dense_w"] > 0:
            lists.append(_pages_of(row["dense"][:s["depth"]], url_of))
            weights.append(s["dense_w"])
        if s["page_w"] > 0:
            lists.append(row["page"][s["page_fields"]][:s["page_depth"]])
            weights.append(s["page_w"])
        if s.get("pdense_w", 0.0) > 0:
            lists.append(row["pdense"][:s["page_depth"]])
            weights.append(s["pdense_w"])
        fused_pages = reciprocal_rank_fusion(lists, s["k"], weights)
        return sorted(fused_pages, key=lambda u: -fused_pages[u])[:10]
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
    if s.get("pdense_w", 0.0) > 0:
        for r, u in enumerate(row["pdense"][:s["page_depth"]], start=1):
            page_score[u] = page_score.get(u, 0.0) + s["pdense_w"] / (s["k"] + r)
    return sorted(page_score, key=lambda u: -page_score[u])[:10]


def ndcg(site: dict, s: dict, part: str = "all") -> float:
    """Mean nDCG@10 over the site's queries: all, the even-numbered ("tune") or the odd ("held")."""
    rows = site["rows"] if part == "all" else site["rows"][0 if part == "tune" else 1::2]
    return statistics.fmean(score([page_path(u) for u in ranked_pages(row, site["url_of"], s)], row["rel"])["ndcg"]
                            for row in rows)


KEYS = ("k", "depth", "bm25_w", "dense_w", "page_w", "page_depth", "chunk_boosts", "page_fields")
EXTRA = ("support", "pdense_w", "page_rrf")


def label_of(r: dict) -> str:
    if "label" in r:
        return r["label"]
    text = (f"k={r['k']} depth={r['depth']} bm25={r['bm25_w']} dense={r['dense_w']} page={r['page_w']}"
            f"@{r['page_depth']} {r['chunk_boosts']} {r['page_fields']}")
    return text + "".join(f" {k}={r[k]}" for k in EXTRA if r.get(k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", nargs=2, action="append", metavar=("DATA", "QRELS"), required=True)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--holdout", action="store_true", help="choose on even-numbered queries, report odd ones too")
    ap.add_argument("--small-grid", action="store_true", help="stage 1 over 3x2x3x2x3x2 settings instead of 540")
    ap.add_argument("--config", default=None)
    ap.add_argument("--cache", default="", help="pickle of the collected lists: written once, read afterwards")
    ap.add_argument("--json", default="")
    ap.add_argument("--write-config", default="", help="write the best setting by mean as a TOML [retrieve] table")
    args = ap.parse_args()
    config = load_config(args.config)
    sites = {}
    if args.cache and os.path.exists(args.cache):
        with open(args.cache, "rb") as f:
            sites = pickle.load(f)
    for data, qrels in args.site:
        name = os.path.basename(qrels).split("_")[0].split(".")[0]
        if name in sites:
            continue
        sites[name] = collect(data, qrels, args.limit, args.offset, config)
        print(f"{name}: {len(sites[name]['rows'])} queries collected", flush=True)
    if args.cache:
        with open(args.cache, "wb") as f:
            pickle.dump(sites, f)
    base = {"k": 60, "depth": 100, "bm25_w": 1.0, "dense_w": 1.0, "page_w": 1.0, "page_depth": 50,
            "chunk_boosts": "t2h1.5", "page_fields": "t1h1"}
    # stage 1: fusion constants with the default field boosts
    axes = ((10, 30, 60), (100, 200), (0.25, 0.5, 1.0), (1.0, 1.5), (0.5, 1.0, 1.5), (50, 100)) if args.small_grid \
        else ((10, 30, 60), (50, 100, 200), (0.0, 0.5, 1.0), (1.0, 1.5), (0.0, 0.5, 1.0, 1.5, 2.0), (50, 100))
    grid = [dict(zip(KEYS, v)) for v in itertools.product(*axes, ("t2h1.5",), ("t1h1",))]
    grid = [g for g in grid if not (g["page_w"] == 0 and g["page_depth"] != 50) and (g["bm25_w"] or g["page_w"])]
    singles = [{**base, "label": label, **over} for label, over in (
        ("bm25 (chunks)", {"dense_w": 0.0, "page_w": 0.0}),
        ("dense", {"bm25_w": 0.0, "page_w": 0.0}),
        ("page BM25 (title x2 + body)", {"bm25_w": 0.0, "dense_w": 0.0, "page_depth": 100, "page_fields": "plain"}),
        ("page dense (mean chunk vector)", {"bm25_w": 0.0, "dense_w": 0.0, "page_w": 0.0, "pdense_w": 1.0,
                                            "page_depth": 100}),
        ("naive: page BM25 + dense, RRF 60", {"bm25_w": 0.0, "page_depth": 100, "page_fields": "plain"}),
        ("hybrid before issue 14", {"page_w": 0.0}),
        ("hybrid, issue 14 defaults", {"k": 30, "depth": 200, "bm25_w": 0.5, "page_w": 1.0, "page_depth": 50,
                                       "page_fields": "t1h1"}))]
    part = "tune" if args.holdout else "all"

    def run(settings, held=False):
        rows = []
        for g in settings:
            per = {n: round(ndcg(site, g, part), 4) for n, site in sites.items()}
            row = {**g, **per, "mean": round(statistics.fmean(per.values()), 4)}
            if held:
                hp = {f"{n}/held": round(ndcg(site, g, "held"), 4) for n, site in sites.items()}
                row.update(hp)
                row["mean/held"] = round(statistics.fmean(hp.values()), 4)
            rows.append(row)
        return rows

    held = args.holdout
    fixed = run(singles, held)
    stage1 = run(grid)
    print(f"stage 1: {len(stage1)} settings scored", flush=True)
    best = max(stage1, key=lambda r: r["mean"])
    # stage 2: field boosts of the chunk and page queries around the best stage-1 setting
    stage2 = run([{**{k: best[k] for k in KEYS}, "chunk_boosts": cb, "page_fields": pf, "page_w": pw}
                  for cb in CHUNK_BOOSTS for pf in PAGE_VARIANTS for pw in (best["page_w"], 1.0)])
    # stage 3, around the best so far and around the defaults: page support (a page's second-best
    # candidate chunk adds `support` x its fused score), dense page vectors, page-level fusion
    top2 = max(stage1 + stage2, key=lambda r: r["mean"])
    current = next(r for r in fixed if r["label"] == "hybrid, issue 14 defaults")
    variants = [{"support": sup} for sup in (0.0, 0.1, 0.25, 0.5)] + \
        [{"pdense_w": w} for w in (0.25, 0.5, 1.0)] + \
        [{"page_rrf": True, "pdense_w": w} for w in (0.0, 0.5, 1.0)]
    stage3 = run([{**{k: ref[k] for k in KEYS}, **v} for ref in (top2, current) for v in variants], held)
    top3 = max(stage3, key=lambda r: r["mean"])
    # stage 4: the fusion constants again around the best stage-3 variant
    stage4 = run([{**{k: top3[k] for k in KEYS + EXTRA if k in top3}, "k": kk, "bm25_w": bw, "page_w": pw}
                  for kk in (10, 30, 60) for bw in (0.25, 0.5, 1.0) for pw in (0.5, 1.0, 1.5)], held)
    out = fixed + stage1 + stage2 + stage3 + stage4
    names = list(sites)
    cols = names + ["mean"] + ([f"{n}/held" for n in names] + ["mean/held"] if held else [])

    def show(r):
        print(f"{label_of(r):<84} " + " ".join(f"{r[c]:>7.4f}" if c in r else f"{'':>7}" for c in cols))

    print(f"{'setting':<84} " + " ".join(f"{c[:7]:>7}" for c in cols) + (" (choice on even queries)" if held else ""))
    for r in fixed:
        show(r)
    print("best 10 of stage 1, best 5 of stage 2:")
    for r in sorted(stage1, key=lambda r: -r["mean"])[:10] + sorted(stage2, key=lambda r: -r["mean"])[:5]:
        show(r)
    print("stage 3 (around the best so far, then around the defaults), held-out columns included:")
    for r in stage3:
        show(r)
    print("stage 4, best 8:")
    for r in sorted(stage4, key=lambda r: -r["mean"])[:8]:
        show(r)
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
