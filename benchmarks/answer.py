"""Answer benchmark: quality, abstention and speed of the fast, slow and auto modes on the
Python FAQ questions (shared/eval/pyfaq_qa.dev.jsonl) plus our unanswerable set, and the LLM
call overhead against raw llama-cpp-python on the identical prompt, in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/answer.py [--data DIR] [--limit 20] [--overhead 3]

--data DIR reuses a crawled and indexed Python docs site (e.g. ./fathom-data after
`bash scripts/demo.sh`); without it the script crawls tutorial/ and faq/ like the demo.
Prints a table and writes every figure to benchmarks/out/answer.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.e2e import bench_answer  # noqa: E402
from fathom.config import load_config  # noqa: E402
from fathom.demo import PYTHON_DOCS, SECTIONS  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from fathom.localsite import serve_directory  # noqa: E402
from indexer.generations import current_generation  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out", "answer.json")
QA = "/work/shared/eval/pyfaq_qa.dev.jsonl"
UNANSWERABLE = os.path.join(HERE, "data", "unanswerable_python.jsonl")


def ensure_index(data: str) -> Engine:
    engine = Engine(data, load_config(None))
    try:
        current_generation(os.path.join(data, "index"))
        return engine
    except Exception:  # no index yet: crawl and index the demo sections
        pass
    with serve_directory(PYTHON_DOCS) as base:
        engine.crawl([f"{base}{s}/index.html" for s in SECTIONS])
    engine.index()
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(HERE, "out", "answer-data"))
    parser.add_argument("--qa", default=QA)
    parser.add_argument("--unanswerable", default=UNANSWERABLE)
    parser.add_argument("--limit", type=int, default=20, help="questions from each file (default 20)")
    parser.add_argument("--modes", default="fast,slow,auto")
    parser.add_argument("--overhead", type=int, default=3,
                        help="questions per model for the raw llama-cpp-python comparison (0: skip)")
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()
    engine = ensure_index(args.data)
    modes = tuple(m for m in args.modes.split(",") if m)
    evals = engine.evaluate_answers(args.qa, args.unanswerable, modes, args.limit)
    overhead = {}
    if args.overhead:
        with open(args.qa) as f:
            questions = [json.loads(line)["question"] for line in f if line.strip()][:args.overhead]
        for mode in ("fast", "slow"):
            r = bench_answer(engine, questions, mode)
            overhead[mode] = {k: v for k, v in r.items() if k != "rows"} | {"rows": r["rows"]}
    results = {"command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
               "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "total_s": time.perf_counter() - started,
               "modes": [dataclasses.asdict(e) for e in evals], "overhead": overhead}
    print(f"{'mode':<5} {'cites src':>9} {'F1':>6} {'support':>8} {'model cit.':>10} {'false abst':>10} "
          f"{'abstain':>8} {'mean s':>7} {'p95 s':>6} {'1st tok ms':>10} {'tok/s':>6}  modes used")
    for r in results["modes"]:
        print(f"{r['mode']:<5} {r['cites_source']:>9.3f} {r['token_f1']:>6.3f} {r['citation_support']:>8.3f} "
              f"{r['model_citation_precision']:>10.3f} {r['false_abstention']:>10.3f} {r['abstention']:>8.3f} "
              f"{r['mean_s']:>7.2f} {r['p95_s']:>6.2f} {r['first_token_ms_p50']:>10.0f} {r['tokens_per_s']:>6.1f}  "
              f"{r['modes_used']}")
    by = {r["mode"]: r for r in results["modes"]}
    if "slow" in by and "auto" in by and by["slow"]["token_f1"] and by["slow"]["mean_s"]:
        print(f"\nauto/slow: F1 {by['auto']['token_f1'] / by['slow']['token_f1']:.2f}, cites source "
              f"{by['auto']['cites_source'] / max(by['slow']['cites_source'], 1e-9):.2f}, "
              f"mean time {by['auto']['mean_s'] / by['slow']['mean_s']:.2f}  (targets: >= 0.95, <= 0.50)")
    for mode, r in overhead.items():
        if "generate_ms_ratio" in r:
            print(f"{mode} ({r['model']}): generation {r['generate_ms_ours']:.0f} ms ours vs {r['generate_ms_raw']:.0f} ms "
                  f"raw llama-cpp-python on the same prompt, ratio {r['generate_ms_ratio']:.2f} "
                  f"(first token {r['first_token_ms_ours']:.0f} vs {r['first_token_ms_raw']:.0f} ms; "
                  f"{r['same_output']}/{r['generated']} identical outputs)")
    print(f"\ntotal {results['total_s']:.0f} s, 1-min load average {load_before[0]:.2f} before, "
          f"{results['loadavg_after'][0]:.2f} after; figures in {os.path.relpath(OUT)}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2, default=float)


if __name__ == "__main__":
    main()
