"""End-to-end benchmark of the demo pipeline (crawl, index, search, answer) on the Python
docs' tutorial/ and faq/, each figure beside a raw baseline measured in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/e2e.py [--data DIR] [--questions N]

Prints a table and writes every figure to benchmarks/out/e2e.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

import synthesizer.engine as synth_engine  # noqa: E402
from crawler.run import scrapy_settings  # noqa: E402
from fathom.config import Config  # noqa: E402
from fathom.demo import PYTHON_DOCS, SECTIONS  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from fathom.localsite import serve_directory  # noqa: E402
from indexer.build import read_chunks  # noqa: E402
from indexer.generations import current_generation  # noqa: E402
from indexer.lexical import FIELD_BOOSTS, TEXT_FIELDS, query_terms  # noqa: E402
from synthesizer.llm import STOP, load_llama  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out", "e2e.json")
QUESTIONS = "/work/shared/eval/pyfaq_qa.dev.jsonl"
CRAWL_REPEATS = 5  # medians of 5: a crawl of 26 pages takes about a second
SEARCH_QUERIES = 30
WARMUP_QUERIES = 3
CANDIDATES = 50  # RetrieveConfig's bm25_candidates and dense_candidates
LISTEN_BACKLOG = 64  # serve_directory's backlog (socketserver's 5 made crawl times bimodal)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def median(values: list[float]) -> float:
    return float(np.median(values))


# --- crawl ----------------------------------------------------------------------------
def bench_crawl(root: str) -> tuple[dict, Engine]:
    """Engine.crawl into fresh data dirs vs the bare spider (alternating), then recrawls of
    the unchanged site. Wall times include each child process's start-up; in-process times
    (from creating the CrawlerProcess until it stops) do not."""
    settings = {k: v for k, v in scrapy_settings(Config().crawl).items() if k != "ITEM_PIPELINES"}
    ours, bare, recrawls = [], [], []
    with serve_directory(PYTHON_DOCS) as base:
        seeds = [f"{base}{s}/index.html" for s in SECTIONS]
        for _ in range(CRAWL_REPEATS):
            job = {"seeds": seeds, "out_dir": tempfile.mkdtemp(dir=root, prefix="bare-"), "settings": settings}
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, os.path.join(HERE, "bare_crawl.py")], input=json.dumps(job),
                                  capture_output=True, text=True, check=True)
            bare.append({"wall_s": time.perf_counter() - t, **json.loads(proc.stdout.splitlines()[-1])})
            engine = Engine(tempfile.mkdtemp(dir=root, prefix="data-"))
            t = time.perf_counter()
            report = engine.crawl(seeds)
            ours.append({"wall_s": time.perf_counter() - t, "fetched": report.fetched, "new": report.new,
                         "elapsed_s": report.elapsed_s})
        for _ in range(CRAWL_REPEATS):
            t = time.perf_counter()
            report = engine.crawl(seeds)
            recrawls.append({"wall_s": time.perf_counter() - t, "fetched": report.fetched,
                             "unchanged": report.unchanged, "elapsed_s": report.elapsed_s})
    pages_ours, pages_bare = ours[-1]["fetched"], bare[-1]["fetched"]
    wall_ours, wall_bare = median([r["wall_s"] for r in ours]), median([r["wall_s"] for r in bare])
    in_ours, in_bare = median([r["elapsed_s"] for r in ours]), median([r["elapsed_s"] for r in bare])
    wall_re = median([r["wall_s"] for r in recrawls])
    return {
        "pages_ours": pages_ours, "pages_bare": pages_bare, "repeats": CRAWL_REPEATS,
        "listen_backlog": LISTEN_BACKLOG,
        "wall_s_ours": wall_ours, "wall_s_bare": wall_bare,
        "pages_per_s_ours": pages_ours / wall_ours, "pages_per_s_bare": pages_bare / wall_bare,
        "pages_per_s_ratio": (pages_ours / wall_ours) / (pages_bare / wall_bare),
        "inproc_pages_per_s_ours": pages_ours / in_ours, "inproc_pages_per_s_bare": pages_bare / in_bare,
        "inproc_pages_per_s_ratio": (pages_ours / in_ours) / (pages_bare / in_bare),
        "recrawl_wall_s": wall_re, "recrawl_unchanged": recrawls[-1]["unchanged"],
        "recrawl_vs_first_ratio": wall_re / wall_ours,
        "runs": {"ours": ours, "bare": bare, "recrawl": recrawls},
    }, engine


# --- index ----------------------------------------------------------------------------
def bench_index(engine: Engine) -> dict:
    """Engine.index() with a cold embedding cache vs the embedder alone on the same chunk
    texts, then a rebuild with a warm cache. The embedder is loaded and warmed first."""
    t = time.perf_counter()
    embedder = engine.embedder
    load_s = time.perf_counter() - t
    embedder.embed_documents(["warm-up text for the embedder"] * 32)
    embed_calls: list[float] = []
    embed = embedder.embed_documents

    def timed_embed(texts, batch_size=32):
        t0 = time.perf_counter()
        try:
            return embed(texts, batch_size)
        finally:
            embed_calls.append(time.perf_counter() - t0)

    embedder.embed_documents = timed_embed  # an instance attribute, removed below
    t = time.perf_counter()
    try:
        report = engine.index()
    finally:
        del embedder.embed_documents
    build_s = time.perf_counter() - t
    texts = [c.embed_text() for c in read_chunks(current_generation(engine.index_root))]
    t = time.perf_counter()
    embedder.embed_documents(texts, batch_size=32)
    raw_s = time.perf_counter() - t
    t = time.perf_counter()
    rebuild = engine.index()
    rebuild_s = time.perf_counter() - t
    return {
        "pages": report.pages, "chunks": report.chunks, "embedded": report.embedded,
        "embedder_load_s": load_s, "build_s": build_s, "build_embed_s": sum(embed_calls),
        "build_embed_calls": len(embed_calls), "raw_embed_s": raw_s,
        "chunks_per_s_ours": report.chunks / build_s, "chunks_per_s_raw": len(texts) / raw_s,
        "chunks_per_s_ratio": (report.chunks / build_s) / (len(texts) / raw_s),
        "rebuild_warm_s": rebuild_s, "rebuild_embedded": rebuild.embedded,
        "rebuild_vs_build_ratio": rebuild_s / build_s,
    }


# --- search ---------------------------------------------------------------------------
def bench_search(engine: Engine, queries: list[str]) -> dict:
    """Engine.search(q, k=10) vs the sum of its raw parts on the same index: one tantivy
    search of the pre-parsed query, one embed_query, one hnswlib knn_query."""
    index = engine.open_index()
    embedder = engine.embedder
    searcher = index.lexical.index.searcher()
    k_dense = min(CANDIDATES, index.dense.get_current_count())

    def ours(q: str) -> tuple[float, dict]:
        t = time.perf_counter()
        result = engine.search(q, k=10)
        return time.perf_counter() - t, result.timings_ms

    def raw(q: str) -> tuple[float, float, float]:
        parsed, _ = index.lexical.index.parse_query_lenient(" ".join(query_terms(q)), list(TEXT_FIELDS),
                                                            field_boosts=FIELD_BOOSTS)
        t0 = time.perf_counter()
        searcher.search(parsed, CANDIDATES)
        t1 = time.perf_counter()
        vec = embedder.embed_query(q)
        t2 = time.perf_counter()
        index.dense.knn_query(vec.reshape(1, -1), k=k_dense)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    for q in queries[:WARMUP_QUERIES]:
        ours(q)
        raw(q)
    ours_s, parts, raw_parts = [], [], []
    for q in queries:
        s, timings = ours(q)
        ours_s.append(s)
        parts.append(timings)
        raw_parts.append(raw(q))
    raw_sum = [sum(p) for p in raw_parts]
    p_ours, p_raw = np.percentile(ours_s, [50, 95]), np.percentile(raw_sum, [50, 95])
    return {
        "queries": len(queries), "warmup": WARMUP_QUERIES,
        "p50_ms_ours": ms(p_ours[0]), "p95_ms_ours": ms(p_ours[1]),
        "p50_ms_raw_sum": ms(p_raw[0]), "p95_ms_raw_sum": ms(p_raw[1]),
        "p50_ratio": p_ours[0] / p_raw[0], "p95_ratio": p_ours[1] / p_raw[1],
        "p50_ms_ours_parts": {key: round(median([t.get(key, 0.0) for t in parts]), 2)
                              for key in ("bm25_ms", "embed_ms", "dense_ms", "fuse_ms")},
        "p50_ms_raw_parts": {key: ms(median([p[i] for p in raw_parts]))
                             for i, key in enumerate(("tantivy_ms", "embed_ms", "knn_ms"))},
    }


# --- answer ---------------------------------------------------------------------------
def raw_generate(llama, messages: list[dict], max_tokens: int,
                 max_deltas: int | None = None) -> tuple[list[str], list[float], float]:
    """Stream a chat completion straight from llama-cpp-python with the synthesizer's settings,
    from a reset KV cache, stopping after `max_deltas` text deltas if given: the deltas, the
    seconds at which each arrived, and the seconds until the stream ended."""
    llama.reset()
    t0 = time.perf_counter()
    deltas, times = [], []
    stream = llama.create_chat_completion(messages, stream=True, max_tokens=max_tokens, temperature=0.0,
                                          stop=STOP, repeat_penalty=1.1)
    for part in stream:
        delta = part["choices"][0]["delta"].get("content")
        if delta:
            deltas.append(delta)
            times.append(time.perf_counter() - t0)
            if len(deltas) == max_deltas:
                stream.close()
                break
    return deltas, times, time.perf_counter() - t0


def bench_answer(engine: Engine, questions: list[str], mode: str = "fast") -> dict:
    """Engine.ask(q, mode) (fast or slow) vs raw llama-cpp-python on the exact messages the synthesizer
    sends, on the same loaded Llama, timed over the tokens ours generated (ours may stop at its
    deadline). The messages are captured first by asks whose generation yields nothing (these also
    warm retrieval); then ours and raw take turns going first, and the KV cache is reset before
    every generation so neither reuses the other's prompt."""
    # one prompt, one generation on each side: the quick start's two prompts have no raw counterpart
    cfg = dataclasses.replace(engine.config.answer, fast_lead_passages=0, slow_lead_passages=0)
    engine = Engine(engine.data_dir, dataclasses.replace(engine.config, answer=cfg), embedder=engine.embedder)
    model, n_ctx, max_tokens = ((cfg.fast_model, cfg.fast_n_ctx, cfg.fast_max_tokens) if mode == "fast"
                                else (cfg.slow_model, cfg.slow_n_ctx, cfg.slow_max_tokens))
    t = time.perf_counter()
    llama = load_llama(model, n_ctx, cfg.n_threads)
    load_s = time.perf_counter() - t
    if engine.synthesizer().llm(mode).llama is not llama:
        raise RuntimeError("the synthesizer's fast model is not the cached Llama the baseline uses")
    raw_generate(llama, [{"role": "user", "content": "Say hello."}], 4)  # first decode allocates buffers
    calls: list[dict] = []
    original = synth_engine._stream

    def dry(llm, messages):
        calls.append({"messages": messages})
        return iter(())

    def recording(llm, messages):
        call = {"messages": messages, "text": "", "done": False}
        calls.append(call)
        for delta in original(llm, messages):
            call["text"] += delta
            yield delta
        call["done"] = True  # not reached when ours stops at its deadline

    rows = []
    try:
        synth_engine._stream = dry
        prompts = []
        for q in questions:
            calls.clear()
            engine.ask(q, mode=mode)
            prompts.append(calls[0]["messages"] if calls else None)
        synth_engine._stream = recording
        for i, (q, messages) in enumerate(zip(questions, prompts)):
            raw_first = bool(messages) and i % 2 == 1
            raw = raw_generate(llama, messages, max_tokens) if raw_first else None
            calls.clear()
            llama.reset()
            t = time.perf_counter()
            answer = engine.ask(q, mode=mode)
            row = {"question": q, "ask_s": time.perf_counter() - t, "loadavg_1min": os.getloadavg()[0],
                   "mode": answer.mode, "abstained": answer.abstained, "timings": dict(answer.timings),
                   "notes": list(answer.notes)}
            n = answer.timings.get("tokens", 0)
            if messages and calls and n:
                ours = calls[0]
                if raw is None:
                    raw = raw_generate(llama, messages, max_tokens, None if ours["done"] else n)
                deltas, times, end_s = raw
                if not deltas:
                    raise RuntimeError(f"raw generation gave no text for {q!r}, ours gave {n} tokens")
                # ours ran to the end of its stream, or was cut right after its n-th delta
                gen_s = end_s if ours["done"] or len(deltas) < n else times[n - 1]
                row["raw"] = {"first": "raw" if raw_first else "ours", "generate_ms": ms(gen_s),
                              "first_token_ms": ms(times[0]), "tokens": min(n, len(deltas)),
                              "tokens_per_s": min(n, len(deltas)) / gen_s}
                row["same_prompt"] = ours["messages"] == messages
                row["same_output"] = "".join(deltas[:n]) == ours["text"]
            rows.append(row)
    finally:
        synth_engine._stream = original
    gen = [r for r in rows if "raw" in r]
    out = {"mode": mode, "model": model, "max_tokens": max_tokens, "model_load_s": load_s,
           "questions": len(rows), "generated": len(gen), "same_output": sum(r["same_output"] for r in gen),
           "same_prompt": sum(r["same_prompt"] for r in gen),
           "ask_s_mean": float(np.mean([r["ask_s"] for r in rows])), "rows": rows}
    if gen:  # medians over questions: one generation caught by a load spike is not the picture
        for key in ("generate_ms", "first_token_ms", "tokens", "tokens_per_s"):
            out[f"{key}_ours"] = median([r["timings"][key] for r in gen])
            out[f"{key}_raw"] = median([r["raw"][key] for r in gen])
        for key in ("generate_ms", "first_token_ms", "tokens_per_s"):
            out[f"{key}_ratio"] = median([r["timings"][key] / r["raw"][key] for r in gen])
    return out


# --- report ---------------------------------------------------------------------------
def table(r: dict) -> list[tuple[str, str, str, str, str]]:
    """(stage, figure, ours, same-run baseline, ratio ours/baseline) rows."""
    c, i, s, a = r["crawl"], r["index"], r["search"], r["answer"]
    rows = [
        ("crawl", f"pages/s, wall incl. process start (median of {c['repeats']})",
         f"{c['pages_per_s_ours']:.1f} ({c['pages_ours']} p, {c['wall_s_ours']:.2f} s)",
         f"{c['pages_per_s_bare']:.1f} ({c['pages_bare']} p, {c['wall_s_bare']:.2f} s)", f"{c['pages_per_s_ratio']:.2f}"),
        ("crawl", "pages/s, in-process", f"{c['inproc_pages_per_s_ours']:.1f}",
         f"{c['inproc_pages_per_s_bare']:.1f}", f"{c['inproc_pages_per_s_ratio']:.2f}"),
        ("crawl", "recrawl unchanged site, wall s (base: first crawl)",
         f"{c['recrawl_wall_s']:.2f} ({c['recrawl_unchanged']} unchanged)", f"{c['wall_s_ours']:.2f}",
         f"{c['recrawl_vs_first_ratio']:.2f}"),
        ("index", "chunks/s, cold cache (base: embedder alone)",
         f"{i['chunks_per_s_ours']:.1f} ({i['chunks']} ch, {i['build_s']:.1f} s)",
         f"{i['chunks_per_s_raw']:.1f} ({i['raw_embed_s']:.1f} s)", f"{i['chunks_per_s_ratio']:.2f}"),
        ("index", "embedding s inside the build (base: embedder alone)",
         f"{i['build_embed_s']:.1f} ({i['build_embed_calls']} calls)", f"{i['raw_embed_s']:.1f}",
         f"{i['build_embed_s'] / i['raw_embed_s']:.2f}"),
        ("index", "rebuild, warm cache, s (base: cold build)",
         f"{i['rebuild_warm_s']:.2f} ({i['rebuild_embedded']} embedded)", f"{i['build_s']:.2f}",
         f"{i['rebuild_vs_build_ratio']:.2f}"),
        ("search", f"p50 ms, k=10, {s['queries']} queries (base: tantivy+embed+knn)",
         f"{s['p50_ms_ours']:.2f}", f"{s['p50_ms_raw_sum']:.2f}", f"{s['p50_ratio']:.2f}"),
        ("search", "p95 ms", f"{s['p95_ms_ours']:.2f}", f"{s['p95_ms_raw_sum']:.2f}", f"{s['p95_ratio']:.2f}"),
        ("answer", f"ask(mode=fast) mean s, {a['questions']} questions ({a['generated']} generated)",
         f"{a['ask_s_mean']:.2f}", "-", "-"),
    ]
    if a["generated"]:
        rows += [
            ("answer", f"generation ms, same prompt & tokens, medians ({a['same_output']}/{a['generated']} same text)",
             f"{a['generate_ms_ours']:.0f}", f"{a['generate_ms_raw']:.0f}", f"{a['generate_ms_ratio']:.2f}"),
            ("answer", "first token ms (ours from ask() start)", f"{a['first_token_ms_ours']:.0f}",
             f"{a['first_token_ms_raw']:.0f}", f"{a['first_token_ms_ratio']:.2f}"),
            ("answer", "tokens/s (incl. prompt eval)", f"{a['tokens_per_s_ours']:.1f} ({a['tokens_ours']:.0f} tok)",
             f"{a['tokens_per_s_raw']:.1f} ({a['tokens_raw']:.0f} tok)", f"{a['tokens_per_s_ratio']:.2f}"),
        ]
    rss = r["peak_rss_mib_after"]
    rows.append(("process", "peak RSS MiB after crawl / index / search / answer",
                 " / ".join(f"{rss[k]:.0f}" for k in ("crawl", "index", "search", "answer")), "-", "-"))
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Print `rows` as an aligned plain-text table under a header."""
    head = ("stage", "figure", "ours", "baseline", "ours/base")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    for n, row in enumerate([head, *rows]):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the demo pipeline stage by stage, each figure "
                                                 "beside a raw baseline measured in the same run.")
    parser.add_argument("--data", metavar="DIR",
                        help="keep the benchmark's data directories under DIR (default: a temp dir)")
    parser.add_argument("--questions", metavar="N", type=int, default=5,
                        help="FAQ questions to answer (default 5)")
    args = parser.parse_args()
    with open(QUESTIONS) as f:
        questions = [json.loads(line)["question"] for line in f if line.strip()]
    if args.data:
        os.makedirs(args.data, exist_ok=True)
    root = tempfile.mkdtemp(prefix="fathom-e2e-", dir=args.data)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rss_mib: dict[str, float] = {}

    def stage(name: str, result):
        rss_mib[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result

    try:
        crawl, engine = bench_crawl(root)
        results = {"crawl": stage("crawl", crawl), "index": stage("index", bench_index(engine)),
                   "search": stage("search", bench_search(engine, questions[:SEARCH_QUERIES])),
                   "answer": stage("answer", bench_answer(engine, questions[:args.questions]))}
    finally:
        if not args.data:
            shutil.rmtree(root, ignore_errors=True)
    results = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "data_dir": root if args.data else None, "total_s": time.perf_counter() - started,
        "peak_rss_mib_after": rss_mib,  # this process only: children inherit its high-water mark at exec
        **results,
    }
    print_table(table(results))
    m = results["machine"]
    print(f"\ntotal {results['total_s']:.0f} s on {m['cpus']} CPUs, 1-min load average "
          f"{m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after; figures in {os.path.relpath(OUT)}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2, default=float)


if __name__ == "__main__":
    main()
