"""0.5B-drafts-for-1.5B speculative decoding against plain 1.5B decoding, on the same slow-mode
prompts in one run: first-token and total seconds, generated tokens/s, the draft's acceptance
rate, and whether each answer is the plain answer word for word (issue 12).

    flock /tmp/fathom-bench.lock env PYTHONPATH=. .venv/bin/python benchmarks/draft_spec.py --limit 8

Prompts are real slow-mode chat prompts (synthesizer.prompts.build_messages, ~1000 tokens) for
the dev FAQ questions, quoting passages found by `fathom search` in --data, or else by word
overlap in the Python HTML docs installed at /usr/share/doc/python3.11/html. Generation uses slow
mode's settings: greedy, repeat penalty 1.1, the NoCopy logits processor, its stop strings. The
variants take turns going first; each generation starts from an empty KV cache.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics
import sys
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from synthesizer.config import AnswerConfig  # noqa: E402
from synthesizer.llm import STOP, NoCopy, load_llama  # noqa: E402
from synthesizer.prompts import build_messages  # noqa: E402
from synthesizer.textutil import content_terms  # noqa: E402

QA = "/work/shared/eval/pyfaq_qa.dev.jsonl"
DOCS = "/usr/share/doc/python3.11/html"


def doc_passages(root: str, words: int = 150) -> list[str]:
    """~`words`-word passages ("Title: text") of the FAQ, tutorial and HOWTO pages under `root`."""
    import lxml.html

    out = []
    for path in sorted(glob.glob(f"{root}/faq/*.html") + glob.glob(f"{root}/tutorial/*.html")
                       + glob.glob(f"{root}/howto/*.html")):
        tree = lxml.html.parse(path).getroot()
        main = tree.find_class("body") or [tree]
        title = (tree.findtext(".//title") or os.path.basename(path)).split("—")[0].strip()
        buf: list[str] = []
        for block in main[0].iter("p", "pre", "li", "dd"):
            buf += block.text_content().split()
            if len(buf) >= words:
                out.append(f"{title}: {' '.join(buf)}")
                buf = []
        if buf:
            out.append(f"{title}: {' '.join(buf)}")
    return out


def overlap_search(passages: list[str], terms_of: list[set[str]], question: str, k: int) -> list[str]:
    """The `k` passages sharing the most IDF weight with `question` (a stand-in for retrieval)."""
    df = Counter(t for terms in terms_of for t in terms)
    idf = {t: math.log(len(passages) / n) for t, n in df.items()}
    q = content_terms(question)
    scores = [sum(idf.get(t, 0) for t in q & terms) for terms in terms_of]
    best = sorted(range(len(passages)), key=lambda i: -scores[i])[:k]
    return [passages[i] for i in best]


def build_prompts(args, count_tokens) -> list[tuple[str, list[dict]]]:
    questions = [json.loads(line)["question"] for line in open(args.qa) if line.strip()][: args.limit]
    if args.data:
        from fathom.config import load_config
        from fathom.engine import Engine
        engine = Engine(args.data, load_config(None))

        def find(q):
            hits = engine.search(q, k=8, rerank=False).hits
            return [f"{h.title}: {h.text}" for h in hits]
    else:
        passages = doc_passages(args.docs)
        terms_of = [content_terms(p) for p in passages]

        def find(q):
            return overlap_search(passages, terms_of, q, 12)
    out = []
    for q in questions:
        messages, _ = build_messages(q, find(q), count_tokens, args.prompt_tokens)
        out.append((q, messages))
    return out


def generate(llama, messages: list[dict], max_tokens: int, copy_penalty: float) -> dict:
    """One greedy slow-mode answer from an empty KV cache, timed."""
    llama.reset()
    draft = llama.draft_model
    if draft is not None:
        draft.reset_stats()
    kw = {"max_tokens": max_tokens, "temperature": 0.0, "stop": STOP, "repeat_penalty": 1.1}
    if copy_penalty > 0:
        from llama_cpp import LogitsProcessorList
        kw["logits_processor"] = LogitsProcessorList([NoCopy(llama, copy_penalty)])
    t0 = time.perf_counter()
    first, text = None, ""
    for part in llama.create_chat_completion(messages, stream=True, **kw):
        delta = part["choices"][0]["delta"].get("content") or ""
        if delta:
            first = first or time.perf_counter()
            text += delta
    total = time.perf_counter() - t0
    first_s = (first or time.perf_counter()) - t0
    tokens = len(llama.tokenize(text.encode(), add_bos=False, special=False))
    row = {"first_token_s": round(first_s, 2), "total_s": round(total, 2), "tokens": tokens,
           "tokens_per_s": round(tokens / max(total - first_s, 1e-9), 2), "text": text}
    if draft is not None:
        row.update(drafted=draft.drafted, accepted=draft.accepted, draft_s=round(draft.seconds, 2))
    return row


def summarize(rows: list[dict], plain: list[dict]) -> dict:
    def mean(key):
        return round(statistics.fmean(r[key] for r in rows), 2)
    out = {"n": len(rows), "first_token_s_mean": mean("first_token_s"),
           "first_token_s_p50": round(statistics.median(r["first_token_s"] for r in rows), 2),
           "total_s_mean": mean("total_s"), "total_s_p50": round(statistics.median(r["total_s"] for r in rows), 2),
           "tokens_mean": mean("tokens"), "tokens_per_s_mean": mean("tokens_per_s"),
           "same_text_as_plain": sum(r["text"] == p["text"] for r, p in zip(rows, plain))}
    if "drafted" in rows[0]:
        drafted = sum(r["drafted"] for r in rows)
        out["acceptance"] = round(sum(r["accepted"] for r in rows) / drafted, 3) if drafted else None
        out["draft_s_mean"] = mean("draft_s")
    base_total = statistics.fmean(p["total_s"] for p in plain)
    base_first = statistics.fmean(p["first_token_s"] for p in plain)
    base_rate = statistics.fmean(p["tokens_per_s"] for p in plain)
    out["total_vs_plain"] = round(out["total_s_mean"] / base_total, 3)
    out["first_token_vs_plain"] = round(out["first_token_s_mean"] / base_first, 3)
    out["tokens_per_s_vs_plain"] = round(out["tokens_per_s_mean"] / base_rate, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a Fathom data dir to take passages from (default: the installed docs)")
    parser.add_argument("--docs", default=DOCS)
    parser.add_argument("--qa", default=QA)
    parser.add_argument("--limit", type=int, default=8, help="prompts")
    parser.add_argument("--draft-tokens", default="2,4,6",
                        help="comma-separated variants: a draft length, optionally wN: the drafter reads only the "
                             "last N prompt tokens (2,4,2w128)")
    parser.add_argument("--prompt-tokens", type=int, default=1000, help="budget of each prompt")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", default=AnswerConfig().slow_model)
    parser.add_argument("--draft", default=AnswerConfig().fast_model)
    parser.add_argument("--json", action="store_true", help="print every figure as JSON on stdout")
    args = parser.parse_args()
    c = AnswerConfig()
    slow, small = args.target, args.draft
    t = time.perf_counter()
    variants = {"plain": load_llama(slow, c.slow_n_ctx, args.threads, flash_attn=c.flash_attn)}
    for spec in args.draft_tokens.split(","):
        k, _, window = spec.partition("w")
        variants[f"draft{spec}"] = load_llama(slow, c.slow_n_ctx, args.threads, flash_attn=c.flash_attn,
                                              draft_model=small, draft_tokens=int(k),
                                              draft_context_tokens=int(window or 0))
    load_s = round(time.perf_counter() - t, 2)
    prompts = build_prompts(args, lambda s: len(variants["plain"].tokenize(s.encode(), add_bos=False)))
    result = {"loadavg_start": open("/proc/loadavg").read().strip(), "load_s": load_s, "args": vars(args),
              "rows": {name: [] for name in variants}}
    names = list(variants)
    for i, (question, messages) in enumerate(prompts):
        order = names[i % len(names):] + names[: i % len(names)]  # each variant goes first in turn
        n_prompt = len(variants["plain"].tokenize(
            "".join(m["content"] for m in messages).encode(), add_bos=False))
        for name in order:
            row = generate(variants[name], messages, args.max_tokens, c.copy_penalty)
            row.update(question=question, prompt_tokens=n_prompt, went=order.index(name) + 1)
            result["rows"][name].append(row)
            print(f"[{i + 1}/{len(prompts)}] {name:<7} first {row['first_token_s']:6.2f} s total "
                  f"{row['total_s']:6.2f} s {row['tokens']:4d} tok {row['tokens_per_s']:5.2f} tok/s"
                  + (f" accepted {row['accepted']}/{row['drafted']} draft {row['draft_s']} s" if "drafted" in row else "")
                  + f"  prompt {n_prompt} tok", file=sys.stderr, flush=True)
    result["loadavg_end"] = open("/proc/loadavg").read().strip()
    plain = result["rows"]["plain"]
    result["summary"] = {name: summarize(rows, plain) for name, rows in result["rows"].items()}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{'variant':<8} {'1st mean':>8} {'1st p50':>7} {'total':>7} {'p50':>7} {'tok':>6} {'tok/s':>6} "
          f"{'accept':>6} {'draft s':>7} {'total×':>6} {'1st×':>6} {'tok/s×':>6} {'same':>5}")
    for name, s in result["summary"].items():
        print(f"{name:<8} {s['first_token_s_mean']:>8.2f} {s['first_token_s_p50']:>7.2f} {s['total_s_mean']:>7.2f} "
              f"{s['total_s_p50']:>7.2f} {s['tokens_mean']:>6.1f} {s['tokens_per_s_mean']:>6.2f} "
              f"{s.get('acceptance') if s.get('acceptance') is not None else '-':>6} {s.get('draft_s_mean', '-'):>7} "
              f"{s['total_vs_plain']:>6.3f} {s['first_token_vs_plain']:>6.3f} {s['tokens_per_s_vs_plain']:>6.3f} "
              f"{s['same_text_as_plain']:>2}/{s['n']}")
    print(f"load average start {result['loadavg_start']} end {result['loadavg_end']}; load {load_s} s")


if __name__ == "__main__":
    main()
