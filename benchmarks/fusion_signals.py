"""Extra ranked lists tried against the hybrid defaults, on fusion_sweep.py's cached lists.

    .venv/bin/python benchmarks/fusion_signals.py --cache /tmp/s5/sweep.pkl --extra /tmp/signals.pkl \\
        --site /tmp/s5/pg ../shared/eval/pg_qrels.dev.jsonl --site /tmp/s5/sphinx benchmarks/data/sphinx_qrels.jsonl ...

Each signal is a ranked list of pages added to the default fusion with RRF (k = rrf_k) at a
weight: page-level BM25 with the naive baseline's fields (title x2 + body) beside the default
page list; a blend with the naive fusion itself; dense vectors of page titles and of section
headings ("title > heading"); and tantivy phrase queries (the query's words in order) over
pages and over chunks. Then the list-page demotion (issue 14, eighth session): pages with under
`tau` of 100+ words in sentences (indexer.page_shape) keep a share `f` of their score.
nDCG@10 on the even-numbered queries of each site / the odd ones."""
from __future__ import annotations

import argparse
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
from indexer.page_shape import prose_share  # noqa: E402
from retriever.evaluation import load_judged, page_path, score  # noqa: E402
from retriever.fusion import reciprocal_rank_fusion  # noqa: E402

DEFAULT = {"k": 30, "depth": 200, "bm25_w": 0.25, "dense_w": 1.0, "page_depth": 100,
           "chunk_boosts": "t1h1.5", "pages": (("t1h1", 1.0),), "support": 0.1}
PAGE_FIELDS = {"title": 1.0, "headings": 1.0, "body": 1.0}
CHUNK_FIELDS = {"title": 1.0, "heading": 1.5, "body": 1.0}


def hybrid_pages(row: dict, url_of: dict, s: dict) -> dict[str, float]:
    """Page scores under the default fusion (as retriever.hybrid, from cached lists)."""
    fused = reciprocal_rank_fusion([row["chunk"][s["chunk_boosts"]][:s["depth"]], row["dense"][:s["depth"]]],
                                   s["k"], [s["bm25_w"], s["dense_w"]])
    best: dict[str, float] = {}
    second: dict[str, float] = {}
    for cid, sc in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0])):
        u = url_of[cid]
        if u not in best:
            best[u] = sc
        elif u not in second:
            second[u] = sc
    pages = {u: sc + s["support"] * second.get(u, 0.0) for u, sc in best.items()}
    for fields, w in s["pages"]:
        for r, u in enumerate(row["page"][fields][:s["page_depth"]], start=1):
            pages[u] = pages.get(u, 0.0) + w / (s["k"] + r)
    return pages


def naive_pages(row: dict, url_of: dict) -> dict[str, float]:
    """The naive baseline: RRF k=60 of page BM25 (title x2 + body) and chunk dense."""
    pages: dict[str, float] = {}
    for r, cid in enumerate(row["dense"][:200], start=1):
        u = url_of[cid]
        pages[u] = max(pages.get(u, 0.0), 1 / (60 + r))
    for r, u in enumerate(row["page"]["plain"][:200], start=1):
        pages[u] = pages.get(u, 0.0) + 1 / (60 + r)
    return pages


def collect(data: str, qrels: str, n: int, url_of: dict) -> list[dict]:
    """Title-dense, heading-dense and phrase page lists for the first `n` queries of a site."""
    engine = Engine(data, load_config(None))
    index, emb = engine.open_index(), engine.embedder
    titles: dict[str, str] = {}
    heads: dict[tuple[str, str], str] = {}
    for c in index.chunks.values():
        titles.setdefault(c.url, c.title)
        heads.setdefault((c.url, c.heading), f"{c.title} > {c.heading}" if c.heading else c.title)
    turls, hkeys = sorted(titles), sorted(heads)

    def unit(m):
        m = np.asarray(m, np.float32)
        return m / (np.linalg.norm(m, axis=-1, keepdims=True) + 1e-12)
    tv = unit(emb.embed_documents([titles[u] for u in turls]))
    hv = unit(emb.embed_documents([heads[k] for k in hkeys]))
    rows = []
    for j in load_judged(qrels, n):
        q = unit(emb.embed_query(j.query))
        row = {"tdense": [turls[i] for i in np.argsort(-(tv @ q))[:100]], "hdense": [], "pphrase": [], "cphrase": []}
        for i in np.argsort(-(hv @ q)):
            if hkeys[i][0] not in row["hdense"]:
                row["hdense"].append(hkeys[i][0])
            if len(row["hdense"]) >= 100:
                break
        terms = lexical_mod.query_terms(j.query)
        if len(terms) >= 2:
            phrase = '"' + " ".join(terms) + '"'
            q1, _ = index.pages.index.parse_query_lenient(phrase, list(PAGE_FIELDS), field_boosts=PAGE_FIELDS)
            res = index.pages.searcher.search(q1, 100)
            row["pphrase"] = [index.pages.searcher.doc(a)["url"][0] for _, a in res.hits]
            lex = index.lexical
            q2, _ = lex.index.parse_query_lenient(phrase, list(lexical_mod.TEXT_FIELDS), field_boosts=CHUNK_FIELDS)
            res = lex.searcher.search(q2, 200)
            row["cphrase"] = list(dict.fromkeys(url_of[int(lex.searcher.doc(a)["chunk_id"][0])] for _, a in res.hits))
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", nargs=2, action="append", metavar=("DATA", "QRELS"), required=True)
    ap.add_argument("--cache", required=True, help="fusion_sweep.py's pickle of candidate lists")
    ap.add_argument("--extra", default="", help="pickle of this script's lists: written once, read afterwards")
    args = ap.parse_args()
    with open(args.cache, "rb") as f:
        sites = pickle.load(f)
    extra: dict = {}
    if args.extra and os.path.exists(args.extra):
        with open(args.extra, "rb") as f:
            extra = pickle.load(f)
    names = []
    for data, qrels in args.site:
        name = os.path.basename(qrels).split("_")[0].split(".")[0]
        names.append(name)
        if name not in extra:
            extra[name] = collect(data, qrels, len(sites[name]["rows"]), sites[name]["url_of"])
            print(f"{name}: lists for {len(extra[name])} queries", flush=True)
        if f"{name}:prose" not in extra:
            index = Engine(data, load_config(None)).open_index()
            extra[f"{name}:prose"] = {u: prose_share(index.page_text(u)) for u in index.page_chunks}
    if args.extra:
        with open(args.extra, "wb") as f:
            pickle.dump(extra, f)

    def evaluate(ranker) -> dict[str, tuple[float, float]]:
        out = {}
        for n in names:
            site, parts = sites[n], ([], [])
            for i, row in enumerate(site["rows"]):
                pages = ranker(row, extra[n][i], site["url_of"], extra[f"{n}:prose"])
                top = sorted(pages, key=lambda u: -pages[u])[:10]
                parts[i % 2].append(score([page_path(u) for u in top], row["rel"])["ndcg"])
            out[n] = (statistics.fmean(parts[0]), statistics.fmean(parts[1]))
        return out

    def plus(key: str, w: float):
        def ranker(row, ex, url_of, shares):
            pages = hybrid_pages(row, url_of, DEFAULT)
            for r, u in enumerate(ex[key][:100], start=1):
                pages[u] = pages.get(u, 0.0) + w / (DEFAULT["k"] + r)
            return pages
        return ranker

    def blend(lam: float):
        def ranker(row, ex, url_of, shares):
            h, nv = hybrid_pages(row, url_of, DEFAULT), naive_pages(row, url_of)
            mh, mn = max(h.values(), default=1.0), max(nv.values(), default=1.0)
            return {u: h.get(u, 0.0) / mh + lam * nv.get(u, 0.0) / mn for u in set(h) | set(nv)}
        return ranker

    def demoted(tau: float, f: float):
        def ranker(row, ex, url_of, shares):
            pages = hybrid_pages(row, url_of, DEFAULT)
            for u in pages:
                share, words = shares.get(u, (1.0, 0))
                if words >= 100 and share < tau:
                    pages[u] *= f
            return pages
        return ranker

    settings = [("naive (page BM25 title x2 + dense, RRF 60)", lambda row, ex, url_of, shares: naive_pages(row, url_of)),
                ("hybrid defaults", lambda row, ex, url_of, shares: hybrid_pages(row, url_of, DEFAULT))]
    settings += [(f"+ page BM25 title x2 + body, x{w}",
                  lambda row, ex, url_of, shares, w=w: hybrid_pages(row, url_of, {**DEFAULT, "pages": (("t1h1", 1.0), ("plain", w))}))
                 for w in (0.25, 0.5, 1.0)]
    settings += [(f"blend with the naive fusion, lambda {lam}", blend(lam)) for lam in (0.25, 0.5, 1.0)]
    settings += [(f"+ {label} x{w}", plus(key, w)) for key, label in (
        ("tdense", "page-title dense"), ("hdense", "section-heading dense"),
        ("pphrase", "page phrase BM25"), ("cphrase", "chunk phrase BM25")) for w in (0.25, 0.5, 1.0)]
    settings += [(f"list pages (prose < {tau}) x{f}", demoted(tau, f))
                 for tau, f in ((0.1, 0.5), (0.15, 0.5), (0.15, 0.25), (0.15, 0.0), (0.2, 0.5), (0.3, 0.5))]
    print(f"{'list added (nDCG@10: even / odd queries)':<46} " + " ".join(f"{n:>15}" for n in names) + f" {'mean':>15}")
    for label, ranker in settings:
        res = evaluate(ranker)
        print(f"{label:<46} " + " ".join(f"{res[n][0]:.4f} / {res[n][1]:.4f}" for n in names)
              + f" {statistics.fmean(v[0] for v in res.values()):.4f} / {statistics.fmean(v[1] for v in res.values()):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
