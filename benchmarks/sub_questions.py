"""Slow mode's compound-question split, measured where it acts: do the passages quoted to the
model hold the source of every part? Compound questions are made by joining two dev questions
whose sources are different pages, in two forms ("Q1? Q2?" and "Q1, and q2?"); single dev
questions check that nothing is split that should not be. Optionally answers a few compound
questions end to end in slow mode with and without the split.

    PYTHONPATH=. .venv/bin/python benchmarks/sub_questions.py --data DIR [--pairs 40] [--answers 4]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fathom.config import load_config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from synthesizer.decompose import sub_questions  # noqa: E402
from synthesizer.engine import merge_sections  # noqa: E402
from synthesizer.evaluation import _same_page, load_questions  # noqa: E402

QA = "/work/shared/eval/pyfaq_qa.dev.jsonl"


def compounds(questions: list[dict], n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        a, b = rng.sample(questions, 2)
        if _same_page(a["source"], b["source"]):
            continue
        qa, qb = a["question"].rstrip("?"), b["question"]
        text = (f"{qa}? {qb}" if len(out) % 2 == 0 else f"{qa}, and {qb[0].lower() + qb[1:]}")
        out.append({"question": text, "sources": [a["source"], b["source"]]})
    return out


def shown(synth, question: str, split: bool) -> tuple[list, float]:
    """The passages slow mode would quote for `question`, and the retrieval seconds."""
    synth.config = dataclasses.replace(synth.config, sub_questions=split)
    t = time.perf_counter()
    run = synth._start(question, "slow")
    synth._retrieve(run)
    synth._choose(run)
    synth._expand(run)
    return merge_sections(run.hits)[:synth.config.slow_passages], time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--qa", default=QA)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--answers", type=int, default=0, help="compound questions answered end to end, each way")
    args = parser.parse_args()
    engine = Engine(args.data, load_config(None))
    synth = engine.synthesizer()
    singles = load_questions(args.qa, None)
    split_singles = [q["question"] for q in singles if sub_questions(q["question"])]
    pairs = compounds(singles, args.pairs)
    result: dict = {"loadavg_start": open("/proc/loadavg").read().strip(), "pairs": len(pairs),
                    "singles": len(singles), "singles_split": split_singles}
    shown(synth, "warm up the reranker", False)
    for split in (False, True):
        both = one = 0
        secs = []
        for p in pairs:
            passages, s = shown(synth, p["question"], split)
            secs.append(s)
            found = [any(_same_page(h.url, src) for h in passages) for src in p["sources"]]
            both += all(found)
            one += sum(found)
        result["split" if split else "plain"] = {
            "both_sources_shown": both, "sources_shown": one, "of_sources": 2 * len(pairs),
            "retrieve_s_mean": round(statistics.fmean(secs), 3)}
        print("split" if split else "plain", json.dumps(result["split" if split else "plain"]), flush=True)
    result["detected"] = sum(bool(sub_questions(p["question"])) for p in pairs)
    rows = []
    for p in pairs[:args.answers]:
        for split in (False, True):
            synth.config = dataclasses.replace(synth.config, sub_questions=split)
            a = engine.ask(p["question"], "slow")
            rows.append({"question": p["question"], "split": split, "abstained": a.abstained,
                         "total_s": a.timings["total_ms"] / 1000,
                         "cites": [any(_same_page(c.url, src) for c in a.citations) for src in p["sources"]],
                         "answer": a.answer})
            print(json.dumps(rows[-1])[:400], flush=True)
    result["answers"] = rows
    result["loadavg_end"] = open("/proc/loadavg").read().strip()
    print(json.dumps({k: v for k, v in result.items() if k != "answers"}, indent=1))


if __name__ == "__main__":
    main()
