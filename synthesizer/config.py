"""Answering settings (the [answer] table of the config)."""
from __future__ import annotations

from dataclasses import dataclass

from synthesizer.models import MODELS

MODES = ("fast", "slow", "auto")
ABSTAIN_POLICIES = ("always", "borderline", "never")


@dataclass(frozen=True)
class AnswerConfig:
    """Models, context budgets and deadlines of the fast and slow modes."""

    mode: str = "auto"
    fast_model: str = "qwen2.5-coder-0.5b"
    slow_model: str = "qwen2.5-coder-1.5b"
    fast_passages: int = 3
    slow_passages: int = 4
    fast_passage_words: int = 60  # fast mode quotes only this many words of each passage
    slow_passage_words: int = 120  # slow mode likewise when > 0 (0: whole passages)
    fast_lead_passages: int = 1  # > 0: the first sentence is written from this many best passages, then the rest are read
    slow_lead_passages: int = 1  #   (quick first token; the answer goes on from that sentence)
    slow_keep_code: bool = True  # slow windows keep a fenced code block whole (or leave it out), never flattened
    # auto, complex question, confident retrieval: the slow model on this many passages, this many
    # words of each (0 passages: whole slow mode instead); see RESULTS, issue 12, fourth and eleventh sessions
    auto_slow_passages: int = 2
    auto_slow_passage_words: int = 80
    prompt_lookup_tokens: int = 0  # > 0: prompt-lookup speculative decoding drafting this many tokens
    draft_model: str = ""  # a model name: it drafts draft_tokens tokens for the slow model ("" = off)
    draft_tokens: int = 4
    copy_penalty: float = 5.0  # > 0: logits taken from tokens that would extend a 5-word copy of the prompt (own words)
    flash_attn: bool = True  # llama.cpp flash attention: prompts evaluate ~9% faster on this CPU (RESULTS, issue 12)
    slow_rerank: bool = True  # slow mode reorders its candidates with the cross-encoder
    sub_questions: bool = True  # slow mode retrieves for each part of a compound question too
    fast_max_tokens: int = 160
    slow_max_tokens: int = 256
    fast_n_ctx: int = 2048
    slow_n_ctx: int = 4096
    n_threads: int = 2
    adaptive_threads: bool = True  # fewer llama.cpp threads while other processes keep cores busy
    fast_deadline_s: float = 20.0
    slow_deadline_s: float = 90.0
    max_question_chars: int = 1000
    min_support: float = 0.5  # share of a sentence's content words found in its cited passage
    min_evidence: float = 0.5  # share of question content words that the best passages must hold
    # when slow mode offers the model "NOT IN SOURCES": always, only when the passages it quotes
    # hold little of the question (below borderline_evidence), or never (the gate and the verifier decide alone)
    abstain_instruction: str = "borderline"
    # below this the evidence is borderline: a name in the question ("PyCharm") missing from the
    # best fused passages then means abstain, and the "borderline" policy offers NOT IN SOURCES
    borderline_evidence: float = 0.75

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        for name in ("fast_passages", "slow_passages", "fast_max_tokens", "slow_max_tokens", "n_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if min(self.auto_slow_passages, self.auto_slow_passage_words, self.fast_lead_passages,
               self.slow_lead_passages) < 0:
            raise ValueError("auto_slow_passages, auto_slow_passage_words, fast_lead_passages and "
                             "slow_lead_passages must be 0 or more")
        if self.abstain_instruction not in ABSTAIN_POLICIES:
            raise ValueError(f"abstain_instruction must be one of {ABSTAIN_POLICIES}")
        if self.draft_model and self.draft_model not in MODELS:
            raise ValueError(f"draft_model {self.draft_model!r} is not a model; known: {', '.join(MODELS)} "
                             f"(or \"\" for none)")
        if self.draft_tokens < 1:
            raise ValueError("draft_tokens must be at least 1")
        if self.draft_model and self.prompt_lookup_tokens > 0:
            raise ValueError("draft_model and prompt_lookup_tokens > 0 are two kinds of speculative decoding; "
                             "use one (set prompt_lookup_tokens = 0 or draft_model = \"\")")
        if not 0 <= self.min_support <= 1 or not 0 <= self.min_evidence <= 1:
            raise ValueError("min_support and min_evidence are shares between 0 and 1")
