"""llama.cpp settings A/B on the very prompts Fathom builds: for each question, slow (or fast)
mode's chat messages are built once, then every variant answers them in turn (alternating, so
that machine noise falls on all alike). Reports first token (prompt evaluation), decode speed
and total per variant, with raw llama-cpp-python defaults as the baseline in the same run.

    PYTHONPATH=. .venv/bin/python benchmarks/llm_ab.py --data DIR --limit 6 --variants base,flash
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fathom.config import load_config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from synthesizer.engine import merge_sections  # noqa: E402
from synthesizer.evaluation import load_questions  # noqa: E402
from synthesizer.llm import STOP, load_llama  # noqa: E402

QA = "/work/shared/eval/pyfaq_qa.dev.jsonl"
VARIANTS = {"base": {}, "flash": {"flash_attn": True}}


def prompts(engine: Engine, questions: list[dict], mode: str) -> list[list[dict]]:
    synth = engine.synthesizer()
    llm = synth.llm(mode)
    out = []
    for q in questions:
        run = synth._start(q["question"], mode)
        synth._retrieve(run)
        synth._choose(run)
        synth._expand(run)
        if synth._gate(run) is not None:
            continue
        n = synth.passages_for(run.mode, run.focused)[0]
        out.append(synth.prompt(run, llm, merge_sections(run.hits)[:n])[0])
    return out


def answer(llama, messages: list[dict], max_tokens: int, threads: int) -> dict:
    llama.reset()  # every variant evaluates the whole prompt: same work for all
    llama._ctx.set_n_threads(threads, threads)
    t0 = time.perf_counter()
    first, n = None, 0
    for part in llama.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.1,
                                             stream=True, stop=STOP):
        if part["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter()
            n += 1
    end = time.perf_counter()
    first = first or end
    return {"first_token_s": first - t0, "total_s": end - t0, "tokens": n,
            "decode_tok_s": (n - 1) / (end - first) if n > 1 and end > first else 0.0,
            "prompt_tokens": len(llama.tokenize(json.dumps(messages).encode(), add_bos=False))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--qa", default=QA)
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--mode", default="slow", choices=("fast", "slow"))
    parser.add_argument("--variants", default="base,flash")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    engine = Engine(args.data, load_config(None))
    c = engine.config.answer
    model = c.slow_model if args.mode == "slow" else c.fast_model
    n_ctx, max_tokens = (c.slow_n_ctx, c.slow_max_tokens) if args.mode == "slow" else (c.fast_n_ctx, c.fast_max_tokens)
    msgs = prompts(engine, load_questions(args.qa, args.limit), args.mode)
    names = args.variants.split(",")
    llamas = {v: load_llama(model, n_ctx, args.threads, **VARIANTS[v]) for v in names}
    rows: dict[str, list[dict]] = {v: [] for v in names}
    load = [open("/proc/loadavg").read().split()[0]]
    for i, m in enumerate(msgs):
        for v in (names if i % 2 == 0 else names[::-1]):
            rows[v].append(answer(llamas[v], m, max_tokens, args.threads))
        load.append(open("/proc/loadavg").read().split()[0])
    med = statistics.median
    print(f"{args.mode} mode, {len(msgs)} prompts, {args.threads} threads, model {model}; 1-min load {', '.join(load)}")
    print(f"{'variant':<10} {'1st tok p50 s':>13} {'total p50 s':>11} {'decode tok/s':>12} {'tokens':>6} {'vs base':>7}")
    base = med(r["total_s"] for r in rows[names[0]])
    for v in names:
        r = rows[v]
        total = med(x["total_s"] for x in r)
        print(f"{v:<10} {med(x['first_token_s'] for x in r):>13.2f} {total:>11.2f} "
              f"{med(x['decode_tok_s'] for x in r):>12.1f} {statistics.fmean(x['tokens'] for x in r):>6.1f} "
              f"{base / total:>6.2f}x")


if __name__ == "__main__":
    main()
