"""Retrieval evaluation on qrels files (pg_qrels format) and QA files (pyfaq_qa format).

Scoring follows shared/eval/README.md: page level, a hit when the result URL's path (no scheme,
host, query or fragment) equals a relevant path; several chunks of one page count once."""
from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.errors import QueryError


@dataclass(frozen=True)
class Judged:
    """One query with the set of relevant page paths (relative to the site root)."""

    qid: str
    query: str
    relevant: frozenset[str]


@dataclass(frozen=True)
class EvalResult:
    engines: str
    queries: int
    ndcg_at_10: float
    recall_at_10: float
    mrr_at_10: float
    hit_at_5: float
    p50_ms: float
    p95_ms: float
    per_query: list[dict] = field(default_factory=list, repr=False)


def load_judged(path: str, limit: int | None = None) -> list[Judged]:
    """Read a qrels file ({"qid","query","relevant":[...]}) or a QA file ({"qid","question","source"})."""
    out: list[Judged] = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if "relevant" in row:
                    rel = frozenset(_strip(r) for r in row["relevant"])
                    query = row["query"]
                elif "source" in row:
                    rel = frozenset([_strip(row["source"])])
                    query = row["question"]
                else:
                    raise QueryError(f"{path}:{n}: expected 'relevant' or 'source' field")
                out.append(Judged(str(row.get("qid", n)), query, rel))
                if limit and len(out) >= limit:
                    break
    except FileNotFoundError:
        raise QueryError(f"evaluation file not found: {path}") from None
    except (json.JSONDecodeError, KeyError) as exc:
        raise QueryError(f"{path}: not a qrels/QA JSON-lines file ({exc})") from None
    if not out:
        raise QueryError(f"{path}: no queries")
    return out


def _strip(rel: str) -> str:
    return rel.split("#", 1)[0].lstrip("/")


def page_path(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def is_hit(url_path: str, relevant: frozenset[str]) -> bool:
    """A page matches when its path equals a relevant path or ends with '/' + it (site served
    under a prefix)."""
    return url_path in relevant or any(url_path.endswith("/" + r) for r in relevant)


def score(ranked_paths: list[str], relevant: frozenset[str], k: int = 10) -> dict[str, float]:
    """nDCG@k, Recall@k, MRR@k and hit@5 for one ranked list of distinct page paths."""
    top = ranked_paths[:k]
    gains = [1.0 if is_hit(p, relevant) else 0.0 for p in top]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    found = {r for r in relevant if any(p == r or p.endswith("/" + r) for p in top)}
    first = next((i for i, g in enumerate(gains) if g), None)
    return {"ndcg": dcg / ideal if ideal else 0.0, "recall": len(found) / len(relevant) if relevant else 0.0,
            "mrr": 1.0 / (first + 1) if first is not None else 0.0,
            "hit5": 1.0 if any(gains[:5]) else 0.0}


def evaluate(search: Callable[[str], list[str]], judged: list[Judged], engines: str,
             k: int = 10) -> EvalResult:
    """Run `search` (query -> ranked URLs, one per page) over `judged` and average the metrics."""
    rows, times = [], []
    for j in judged:
        t = time.perf_counter()
        urls = search(j.query)
        times.append((time.perf_counter() - t) * 1000)
        paths = list(dict.fromkeys(page_path(u) for u in urls))
        rows.append({"qid": j.qid, **score(paths, j.relevant, k)})
    mean = lambda key: round(statistics.fmean(r[key] for r in rows), 4)  # noqa: E731
    times.sort()
    return EvalResult(engines=engines, queries=len(rows), ndcg_at_10=mean("ndcg"), recall_at_10=mean("recall"),
                      mrr_at_10=mean("mrr"), hit_at_5=mean("hit5"),
                      p50_ms=round(times[len(times) // 2], 2),
                      p95_ms=round(times[min(len(times) - 1, int(len(times) * 0.95))], 2), per_query=rows)
