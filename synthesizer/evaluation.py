"""Answer evaluation on a QA file (pyfaq_qa format) plus a set of unanswerable questions:
citation of the source page, token F1 with the reference answer, citation support (by the
verifier), abstention rates, and timings, per answering mode."""
from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.errors import QueryError
from synthesizer.shaping import broken_code, longest_copied_run
from synthesizer.types import Answer

_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class AnswerEval:
    mode: str
    answerable: int
    unanswerable: int
    cites_source: float  # share of answerable questions whose citations include the source page
    token_f1: float  # mean over answered (not abstained) answerable questions
    citation_support: float  # share of the citation markers shown that the verifier finds supported
    model_citation_precision: float  # share of the markers the model wrote that were supported (fast writes none)
    false_abstention: float  # share of answerable questions abstained on
    abstention: float  # share of unanswerable questions abstained on
    mean_s: float
    p95_s: float
    first_token_ms_p50: float
    tokens_per_s: float  # decoding speed after the first token (prompt evaluation excluded)
    modes_used: dict[str, int]
    copy_words_p50: float = 0.0  # longest run of answer words (code aside) standing verbatim in a cited page
    copy_words_max: int = 0
    broken_code: int = 0  # answers with an unclosed fence, a marker inside code, or a trailing fragment
    duplicate_sources: int = 0  # answers citing one page section under two numbers
    answered_mean_s: float = 0.0  # seconds over answered (not abstained) answerable questions
    answered_p95_s: float = 0.0
    per_question: list[dict] = field(default_factory=list, repr=False)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 (lower-cased words, citation markers removed)."""
    p = _TOKEN.findall(re.sub(r"\[\d+\]", " ", prediction).lower())
    r = _TOKEN.findall(reference.lower())
    common = sum((Counter(p) & Counter(r)).values())
    if not p or not r or not common:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def load_questions(path: str, limit: int | None = None) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
                    if limit and len(rows) >= limit:
                        break
    except FileNotFoundError:
        raise QueryError(f"question file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise QueryError(f"{path}: not JSON lines ({exc})") from None
    return rows


def _same_page(url: str, source: str) -> bool:
    path = urlsplit(url).path.lstrip("/")
    src = source.split("#", 1)[0].lstrip("/")
    return path == src or path.endswith("/" + src)


def _p95(values: list[float]) -> float:
    return round(sorted(values)[min(len(values) - 1, int(len(values) * 0.95))], 2) if values else 0.0


def _row(question: str, answerable: bool, a: Answer) -> dict:
    """One question's line of the report: how it was answered, and where its time went."""
    return {"question": question, "answerable": answerable, "mode": a.mode, "abstained": a.abstained,
            "seconds": a.timings.get("total_ms", 0) / 1000, "reason": a.reason, "evidence": a.evidence,
            "timings": dict(a.timings)}


def evaluate_answers(ask: Callable[[str], Answer], mode: str, qa: list[dict],
                     unanswerable: list[dict], page_text: Callable[[str], str] | None = None) -> AnswerEval:
    """Ask every question in `mode` and aggregate the metrics. `page_text(url)` gives a cited
    page's whole text for the copy-length measure (default: the cited passages)."""
    times, first, tps, f1s, copies, answered_s = [], [], [], [], [], []
    cites = false_abst = abst = supported = total = model_ok = model_total = broken = dups = 0
    used: Counter[str] = Counter()
    rows: list[dict] = []
    for row in qa:
        a = ask(row["question"])
        used[a.mode] += 1
        times.append(a.timings.get("total_ms", 0) / 1000)
        if "first_token_ms" in a.timings:
            first.append(a.timings["first_token_ms"])
            if "decode_tokens_per_s" in a.timings:
                tps.append(a.timings["decode_tokens_per_s"])
        row_out = _row(row["question"], True, a)
        rows.append(row_out)
        if a.abstained:
            false_abst += 1
            continue
        row_out["cites_source"] = any(_same_page(c.url, row["source"]) for c in a.citations)
        row_out["f1"] = token_f1(a.answer, row["answer"])
        row_out["answer"] = a.answer
        urls = list(dict.fromkeys(c.url for c in a.citations))
        sources = [page_text(u) for u in urls] if page_text else [c.passage for c in a.citations]
        row_out["copy_words"] = longest_copied_run(a.answer, sources)
        row_out["broken_code"] = broken_code(a.answer, sources)
        row_out["duplicate_sources"] = len({(c.url, c.heading) for c in a.citations}) < len(a.citations)
        copies.append(row_out["copy_words"])
        broken += row_out["broken_code"]
        dups += row_out["duplicate_sources"]
        answered_s.append(row_out["seconds"])
        cites += row_out["cites_source"]
        f1s.append(row_out["f1"])
        supported += a.timings.get("citations_supported", 0)
        total += a.timings.get("citations_total", 0)
        model_ok += a.timings.get("model_citations_supported", 0)
        model_total += a.timings.get("model_citations_total", 0)
    for row in unanswerable:
        a = ask(row["question"])
        used[a.mode] += 1
        times.append(a.timings.get("total_ms", 0) / 1000)
        abst += a.abstained
        rows.append(_row(row["question"], False, a))
    n, u = len(qa), len(unanswerable)
    return AnswerEval(
        mode=mode, answerable=n, unanswerable=u,
        cites_source=round(cites / n, 3) if n else 0.0,
        token_f1=round(statistics.fmean(f1s), 3) if f1s else 0.0,
        citation_support=round(supported / total, 3) if total else 0.0,
        model_citation_precision=round(model_ok / model_total, 3) if model_total else 0.0,
        false_abstention=round(false_abst / n, 3) if n else 0.0,
        abstention=round(abst / u, 3) if u else 0.0,
        mean_s=round(statistics.fmean(times), 2) if times else 0.0,
        p95_s=_p95(times),
        first_token_ms_p50=round(statistics.median(first), 1) if first else 0.0,
        tokens_per_s=round(statistics.fmean(tps), 1) if tps else 0.0,
        modes_used=dict(used), per_question=rows,
        copy_words_p50=float(statistics.median(copies)) if copies else 0.0,
        copy_words_max=max(copies, default=0), broken_code=broken, duplicate_sources=dups,
        answered_mean_s=round(statistics.fmean(answered_s), 2) if answered_s else 0.0,
        answered_p95_s=_p95(answered_s))
