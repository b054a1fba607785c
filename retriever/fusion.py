"""Rank fusion of the lexical and dense candidate lists."""
from __future__ import annotations


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = 60,
                           weights: list[float] | None = None) -> dict[int, float]:
    """RRF: score(d) = sum_i w_i / (k + rank_i(d)), ranks starting at 1."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return scores


def weighted_score_fusion(runs: list[list[tuple[int, float]]], weights: list[float]) -> dict[int, float]:
    """Min-max normalise each engine's scores to [0, 1], then add them with `weights`
    (a document an engine did not return gets 0 from it)."""
    scores: dict[int, float] = {}
    for run, w in zip(runs, weights):
        if not run:
            continue
        values = [s for _, s in run]
        lo, hi = min(values), max(values)
        span = hi - lo or 1.0
        for doc, s in run:
            scores[doc] = scores.get(doc, 0.0) + w * (s - lo) / span
    return scores
