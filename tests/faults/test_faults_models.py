"""Model faults: a missing model file, a model file with the wrong checksum, and a model that
raises in the middle of generation. Each ends in an extractive answer with a note (slow tier)."""
from __future__ import annotations

import dataclasses
import os

import pytest

from core import verify
from fathom.engine import Engine
from synthesizer.config import AnswerConfig
from synthesizer.llm import LlamaCppLLM
from synthesizer.models import MODELS
from synthesizer.types import Answer

pytestmark = pytest.mark.slow
QUESTION = "How often should the compost heap be turned?"
TINY = AnswerConfig(fast_model="smollm2-135m", slow_model="smollm2-135m", fast_max_tokens=48,
                    slow_max_tokens=48, fast_n_ctx=1024, slow_n_ctx=1024)


def _extractive_with_note(ans: Answer, *words: str) -> None:
    assert ans.mode == "extractive" and not ans.abstained
    assert "[1]" in ans.answer and ans.citations[0].url.endswith("compost.html")
    assert any(all(w in n for w in words) for n in ans.notes), ans.notes


def test_model_file_missing_gives_an_extractive_answer_with_a_note(built_engine, monkeypatch, tmp_path):
    monkeypatch.setenv("FATHOM_MODELS", str(tmp_path / "no-models"))
    cfg = dataclasses.replace(built_engine.config, answer=AnswerConfig(fast_model="qwen2.5-coder-0.5b"))
    ans = Engine(built_engine.data_dir, cfg, embedder=built_engine.embedder).ask(QUESTION, mode="fast")
    _extractive_with_note(ans, "unavailable", "not assembled", "setup.sh")


def test_model_with_the_wrong_checksum_is_refused_with_a_note(built_engine, monkeypatch, tmp_path):
    spec = MODELS["qwen2.5-coder-0.5b"]
    models = tmp_path / "models"
    models.mkdir()
    with open(models / spec.filename, "wb") as f:  # right size, wrong bytes (sparse, all zeros)
        f.truncate(spec.size_bytes)
    monkeypatch.setenv("FATHOM_MODELS", str(models))
    verify.forget()
    cfg = dataclasses.replace(built_engine.config, answer=AnswerConfig(fast_model="qwen2.5-coder-0.5b"))
    ans = Engine(built_engine.data_dir, cfg, embedder=built_engine.embedder).ask(QUESTION, mode="fast")
    _extractive_with_note(ans, "sha256", spec.filename)
    assert not os.path.exists(verify.stamp_path(str(models / spec.filename)))  # a failure is never stamped


class _FailingLlama:
    """A real llama_cpp.Llama whose streamed chat raises after a few tokens, as llama.cpp does
    when decoding fails (llama_decode returned -1)."""

    def __init__(self, real, after: int):
        self._real, self._after = real, after

    def __getattr__(self, name):
        return getattr(self._real, name)

    def create_chat_completion(self, *args, **kwargs):
        tokens = 0
        for part in self._real.create_chat_completion(*args, **kwargs):
            if tokens == self._after:
                raise RuntimeError("llama_decode returned -1")
            tokens += bool(part["choices"][0].get("delta", {}).get("content"))  # the first part names the role
            yield part


def test_model_raising_mid_generation_falls_back_to_an_extractive_answer(built_engine):
    def factory(model: str, n_ctx: int, max_tokens: int) -> LlamaCppLLM:
        llm = LlamaCppLLM(model_name=model, n_ctx=n_ctx, max_tokens=max_tokens, adaptive_threads=False)
        llm._llama = _FailingLlama(llm._llama, after=4)
        return llm
    cfg = dataclasses.replace(built_engine.config, answer=TINY)
    eng = Engine(built_engine.data_dir, cfg, embedder=built_engine.embedder, llm_factory=factory)
    items = list(eng.ask_stream(QUESTION, mode="fast"))
    assert all(isinstance(i, str) for i in items[:-1]) and len(items) == 4 + 1  # 4 tokens, then the failure
    _extractive_with_note(items[-1], "LLM failed", "llama_decode")
