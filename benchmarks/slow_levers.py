"""Slow-mode speed levers, each against plain slow mode and raw llama-cpp-python on the same
prompts, in one run: prompt-lookup decoding, trimming passages to their relevant window, a warm
system-prompt KV cache, and loading the model up front. Also reports each lever's answer quality
(cites source, copy length, broken code, abstentions).

    PYTHONPATH=. .venv/bin/python benchmarks/slow_levers.py --data /tmp/i12-demo --limit 8

--data: a crawled and indexed Python docs site (e.g. tutorial/ + faq/ as in the demo).
Writes every figure to benchmarks/out/slow_levers.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import synthesizer.engine as se  # noqa: E402
from fathom.config import load_config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from synthesizer.evaluation import _same_page, load_questions  # noqa: E402
from synthesizer.llm import load_llama  # noqa: E402
from synthesizer.shaping import broken_code, longest_copied_run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
QA = "/work/shared/eval/pyfaq_qa.dev.jsonl"


def run_config(engine: Engine, answer_cfg, questions: list[dict], cold_prefix: bool = False) -> dict:
    """Slow answers for `questions` with `answer_cfg`; returns per-question rows and the prompts."""
    cfg = dataclasses.replace(engine.config, answer=answer_cfg)
    eng = Engine(engine.data_dir, cfg, embedder=engine.embedder)
    synth = eng.synthesizer()
    captured: list = []
    original = se._stream

    def spy(llm, messages):
        captured.append(messages)
        if cold_prefix:
            llm.llama.reset()  # forget the KV cache: the whole prompt is evaluated again
        yield from original(llm, messages)

    se._stream = spy
    rows = []
    try:
        t = time.perf_counter()
        synth.llm("slow")
        load_s = time.perf_counter() - t
        for q in questions:
            a = eng.ask(q["question"], "slow")
            index = eng.open_index()
            pages = [index.page_text(u) for u in dict.fromkeys(c.url for c in a.citations)]
            rows.append({"question": q["question"], "abstained": a.abstained, "answer": a.answer,
                         "total_s": a.timings["total_ms"] / 1000,
                         "first_token_s": a.timings.get("first_token_ms", 0) / 1000,
                         "generate_s": a.timings.get("generate_ms", 0) / 1000,
                         "tokens": a.timings.get("tokens", 0), "prompt_tokens": a.timings.get("prompt_tokens", 0),
                         "cites_source": any(_same_page(c.url, q["source"]) for c in a.citations),
                         "copy_words": longest_copied_run(a.answer, pages) if not a.abstained else None,
                         "broken": broken_code(a.answer, pages) if not a.abstained else False})
    finally:
        se._stream = original
    return {"rows": rows, "prompts": captured, "load_s": load_s}


def raw(prompts: list, model: str, n_ctx: int, max_tokens: int, threads: int) -> list[dict]:
    """The same chat prompts straight through llama-cpp-python: first token and total seconds."""
    llama = load_llama(model, n_ctx, threads)
    out = []
    for messages in prompts:
        t0 = time.perf_counter()
        first, n = None, 0
        for part in llama.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.0,
                                                 repeat_penalty=1.1, stream=True,
                                                 stop=["<|im_end|>", "<|endoftext|>"]):
            if part["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                n += 1
        out.append({"first_token_s": (first or time.perf_counter()) - t0, "total_s": time.perf_counter() - t0,
                    "tokens": n})
    return out


def summary(rows: list[dict]) -> dict:
    answered = [r for r in rows if not r.get("abstained")]
    med = lambda xs: round(statistics.median(xs), 2) if xs else 0.0  # noqa: E731
    return {"n": len(rows), "answered": len(answered),
            "total_s_mean": round(statistics.fmean(r["total_s"] for r in rows), 2),
            "total_s_p50": med([r["total_s"] for r in rows]),
            "total_s_max": round(max(r["total_s"] for r in rows), 2),
            "first_token_s_p50": med([r["first_token_s"] for r in rows]),
            "tokens_mean": round(statistics.fmean(r["tokens"] for r in rows), 1),
            "prompt_tokens_mean": round(statistics.fmean(r.get("prompt_tokens", 0) for r in rows), 1),
            "cites_source": sum(r.get("cites_source", False) for r in rows),
            "copy_words_p50": med([r["copy_words"] for r in answered if r.get("copy_words") is not None]),
            "broken": sum(r.get("broken", False) for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--qa", default=QA)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--levers", default="plain,cold_prefix,lookup2,lookup10,window120,window120+lookup2",
                        help="comma-separated; windowN trims each passage to its densest N words; leadN writes the "
                             "first sentence from the N best passages before reading the rest")
    parser.add_argument("--every", type=int, default=1, help="take every Nth question of --qa (then --limit)")
    args = parser.parse_args()
    engine = Engine(args.data, load_config(None))
    questions = load_questions(args.qa, None)[::args.every][:args.limit]
    base = engine.config.answer
    single = {
        "plain": {}, "cold_prefix": {},
        "flash": {"flash_attn": True},
        "lookup2": {"prompt_lookup_tokens": 2}, "lookup10": {"prompt_lookup_tokens": 10},
        "window120": {"slow_passage_words": 120}, "window80": {"slow_passage_words": 80},
        "flatcode": {"slow_keep_code": False},
        "nocopy5": {"copy_penalty": 5.0}, "nocopy3": {"copy_penalty": 3.0},
        "max160": {"slow_max_tokens": 160}, "passages3": {"slow_passages": 3},
    }

    def variant(name: str):  # "a+b": both levers
        changes: dict = {}
        for part in name.split("+"):
            if part.startswith("window") and part[6:].isdigit():  # windowN: N words of each passage
                changes["slow_passage_words"] = int(part[6:])
            elif part.startswith("lead") and part[4:].isdigit():  # leadN: first sentence from the N best passages
                changes["slow_lead_passages"] = int(part[4:])
            else:
                changes.update(single[part])
        return dataclasses.replace(base, **changes), "cold_prefix" in name.split("+")
    result: dict = {"loadavg_start": open("/proc/loadavg").read().strip(), "questions": len(questions)}
    engine.ask(questions[0]["question"], "fast")  # embedder, index, reranker loaded before any timing
    for name in args.levers.split(","):
        cfg, cold = variant(name)
        run = run_config(engine, cfg, questions, cold)
        result[name] = {"summary": summary(run["rows"]), "load_s": round(run["load_s"], 2), "rows": run["rows"]}
        if name == "plain":  # raw llama.cpp on the very prompts plain slow mode built
            raw_rows = raw(run["prompts"], base.slow_model, base.slow_n_ctx, base.slow_max_tokens, base.n_threads)
            result["raw"] = {"summary": {k: v for k, v in summary(raw_rows).items()
                                         if k in ("n", "total_s_mean", "total_s_p50", "total_s_max",
                                                  "first_token_s_p50", "tokens_mean")}, "rows": raw_rows}
        print(name, json.dumps(result[name]["summary"]), file=sys.stderr, flush=True)
        if name == "plain":
            print("raw", json.dumps(result["raw"]["summary"]), file=sys.stderr, flush=True)
    result["loadavg_end"] = open("/proc/loadavg").read().strip()
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "slow_levers.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"{'lever':<20} {'mean s':>7} {'p50 s':>6} {'max s':>6} {'1st tok':>7} {'tokens':>6} {'prompt':>6} "
          f"{'cites':>5} {'copy':>5} {'broken':>6} {'answered':>8}")
    for name in [n for n in ["raw"] + args.levers.split(",") if n in result]:  # raw: only with plain
        s = result[name]["summary"]
        print(f"{name:<20} {s['total_s_mean']:>7.2f} {s['total_s_p50']:>6.2f} {s['total_s_max']:>6.2f} "
              f"{s['first_token_s_p50']:>7.2f} {s['tokens_mean']:>6.1f} {s.get('prompt_tokens_mean', 0):>6.0f} "
              f"{s.get('cites_source', '-'):>5} {s.get('copy_words_p50', '-'):>5} {s.get('broken', '-'):>6} "
              f"{s.get('answered', '-'):>8}")
    print(f"load average start {result['loadavg_start']} end {result['loadavg_end']}")


if __name__ == "__main__":
    main()
