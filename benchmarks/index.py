"""Index build throughput, incremental update cost and the compression-level table.

    .venv/bin/python benchmarks/index.py --data DIR [--qrels ../shared/eval/pg_qrels.dev.jsonl]
        [--sample-pages 150] [--queries 500]

DIR holds a crawl store (crawl.duckdb), e.g. of the PostgreSQL docs. In one run:
1. throughput: a full cold build (empty embedding cache) of the first --sample-pages pages vs
   the raw embedder alone on the same chunk texts (ratio ours/raw, target >= 0.85);
2. incremental: change 1% of those pages, rebuild, compare with the full build time;
3. compression: the whole store built at levels 0..4 (embeddings cached after the first):
   index bytes per chunk and % of level 0, dense bytes per chunk, RSS growth per chunk when
   loaded, build s, load s, p50 dense and hybrid query ms, nDCG@10 / Recall@10 (dense only and
   hybrid) on --queries qrels."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import duckdb  # noqa: E402

from fathom.config import Config  # noqa: E402
from indexer.build import build_index, read_chunks  # noqa: E402
from indexer.config import IndexConfig  # noqa: E402
from indexer.embedding import load_embedder  # noqa: E402
from indexer.generations import current_generation  # noqa: E402
from indexer.hybrid_index import HybridIndex  # noqa: E402
from indexer.vectors import LEVELS  # noqa: E402
from retriever.evaluation import load_judged, page_path, score  # noqa: E402
from retriever.hybrid import HybridRetriever  # noqa: E402


def dir_bytes(path: str, suffixes: tuple[str, ...] = ()) -> int:
    total = 0
    for d, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, n)) for n in names if not suffixes or n.endswith(suffixes))
    return total


_RAM_PROBE = """
import os, sys
sys.path.insert(0, sys.argv[1])
from indexer.hybrid_index import HybridIndex
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
idx = HybridIndex.open(sys.argv[2])
print(rss() - before)
"""


def loaded_ram_bytes(root: str) -> int:
    """RSS growth of a fresh process from opening the index (libraries already imported):
    chunk table objects, float32 HNSW graph, the tantivy pages read while opening."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _RAM_PROBE, repo, root], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1])


def sample_store(src: str, dst: str, pages: int) -> None:
    db = duckdb.connect(dst)
    db.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    for table in ("pages", "aliases", "fetch_log", "crawl_runs"):
        db.execute(f"CREATE TABLE {table} AS SELECT * FROM src.{table} LIMIT 0")
    db.execute(f"INSERT INTO pages SELECT * FROM src.pages WHERE NOT deleted ORDER BY url LIMIT {pages}")
    db.execute("CREATE SEQUENCE run_ids START 1")
    db.close()


def throughput(store: str, work: str, cfg: IndexConfig) -> dict:
    emb = load_embedder(cfg.embedder, cfg.threads)
    root = os.path.join(work, "tp-index")
    t = time.perf_counter()
    report = build_index(store, root, cfg, emb, progress=lambda *a: None)
    full_s = time.perf_counter() - t
    texts = [c.embed_text() for c in read_chunks(current_generation(root))]
    t = time.perf_counter()
    emb.embed_documents(texts, cfg.embed_batch_size)
    raw_s = time.perf_counter() - t
    # incremental: change 1% of the pages
    db = duckdb.connect(store)
    n = max(1, report.pages // 100)
    db.execute(f"UPDATE pages SET text = text || '\n\nA new closing paragraph about maintenance windows.', "
               f"content_hash = content_hash || 'x' WHERE url IN (SELECT url FROM pages ORDER BY url LIMIT {n})")
    db.close()
    t = time.perf_counter()
    inc = build_index(store, root, cfg, emb, progress=lambda *a: None)
    inc_s = time.perf_counter() - t
    return {"pages": report.pages, "chunks": report.chunks, "full_build_s": round(full_s, 2),
            "ours_chunks_per_s": round(report.chunks / full_s, 2), "raw_embed_s": round(raw_s, 2),
            "raw_chunks_per_s": round(len(texts) / raw_s, 2), "ratio_ours_vs_raw": round(raw_s / full_s, 3),
            "changed_pages": n, "incremental_s": round(inc_s, 2), "incremental_embedded": inc.embedded,
            "incremental_share_of_full": round(inc_s / full_s, 3)}


def compression_table(store: str, work: str, cfg: IndexConfig, qrels: str, nq: int) -> list[dict]:
    emb = load_embedder(cfg.embedder, cfg.threads)
    judged = load_judged(qrels, nq)
    qvecs = None
    rows = []
    for level in LEVELS:
        root = os.path.join(work, f"lvl{level}")
        os.makedirs(root, exist_ok=True)
        cache = [f for f in os.listdir(work) if f.startswith("embcache-")]
        for f in cache:  # share the embedding cache between levels
            shutil.copy(os.path.join(work, f), root)
        lcfg = dataclasses.replace(cfg, compression_level=level)
        t = time.perf_counter()
        build_index(store, root, lcfg, emb, progress=lambda *a: None)
        build_s = time.perf_counter() - t
        for f in os.listdir(root):
            if f.startswith("embcache-"):
                shutil.copy(os.path.join(root, f), work)
        gen = current_generation(root)
        t = time.perf_counter()
        idx = HybridIndex.open(root, cfg.embedder, threads=cfg.threads)
        load_s = time.perf_counter() - t
        ram = loaded_ram_bytes(root)
        n = len(idx.chunks)
        if qvecs is None:
            qvecs = [emb.embed_query(j.query) for j in judged]
        times, dense_scores = [], []
        for j, v in zip(judged, qvecs):
            t = time.perf_counter()
            labels, _ = idx.dense.knn_query(v.reshape(1, -1), k=100)
            times.append((time.perf_counter() - t) * 1000)
            paths = list(dict.fromkeys(page_path(idx.chunks[int(c)].url) for c in labels[0]))
            dense_scores.append(score(paths, j.relevant))
        retriever = HybridRetriever(idx, _FixedEmbedder(emb, dict(zip((j.query for j in judged), qvecs))),
                                    Config().retrieve)
        hybrid, hybrid_ms = [], []
        for j in judged:
            t = time.perf_counter()
            hits = retriever.search(j.query, 10).hits
            hybrid_ms.append((time.perf_counter() - t) * 1000)
            hybrid.append(score(list(dict.fromkeys(page_path(h.url) for h in hits)), j.relevant))
        size = dir_bytes(gen)
        base = rows[0]["index_bytes"] if rows else size
        rows.append({
            "level": level, "index_bytes": size, "pct_of_level0": round(100 * size / base, 1),
            "bytes_per_chunk": round(size / n, 1), "ram_bytes_per_chunk_loaded": round(ram / n),
            "dense_bytes_per_chunk": round(dir_bytes(gen, (".bin", ".npy", ".npy.xz")) / n, 1),
            "build_s": round(build_s, 2), "load_s": round(load_s, 3),
            "dense_p50_ms": round(statistics.median(times), 3),
            "hybrid_p50_ms_cached_query_vector": round(statistics.median(hybrid_ms), 2),
            "dense_ndcg10": round(statistics.fmean(s["ndcg"] for s in dense_scores), 4),
            "dense_recall10": round(statistics.fmean(s["recall"] for s in dense_scores), 4),
            "hybrid_ndcg10": round(statistics.fmean(s["ndcg"] for s in hybrid), 4),
            "hybrid_recall10": round(statistics.fmean(s["recall"] for s in hybrid), 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


class _FixedEmbedder:
    """The real embedder with the benchmark's query vectors precomputed (same vectors for every level)."""

    def __init__(self, emb, vecs):
        self.emb, self.vecs, self.name, self.dim = emb, vecs, emb.name, emb.dim

    def embed_query(self, text):
        return self.vecs.get(text) if text in self.vecs else self.emb.embed_query(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--qrels", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "eval",
                                                    "pg_qrels.dev.jsonl"))
    ap.add_argument("--sample-pages", type=int, default=150)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--embedder", default=Config().index.embedder)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    cfg = dataclasses.replace(Config().index, embedder=args.embedder)
    store = os.path.join(args.data, "crawl.duckdb")
    out = {"embedder": cfg.embedder}
    with tempfile.TemporaryDirectory() as work:
        if not args.skip_throughput:
            sample = os.path.join(work, "sample.duckdb")
            sample_store(store, sample, args.sample_pages)
            out["throughput"] = throughput(sample, work, cfg)
            print(json.dumps(out["throughput"], indent=2), flush=True)
            for f in os.listdir(work):
                if f.startswith("embcache-") or f == "tp-index":
                    shutil.rmtree(os.path.join(work, f), ignore_errors=True)
        existing = os.path.join(args.data, "index", f"embcache-{cfg.embedder}.npz")
        if os.path.exists(existing):
            shutil.copy(existing, work)  # reuse embeddings of an earlier full build
        out["compression"] = compression_table(store, work, cfg, args.qrels, args.queries)
    os.makedirs(os.path.join(os.path.dirname(__file__), "out"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "out", f"index-{cfg.embedder}.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
