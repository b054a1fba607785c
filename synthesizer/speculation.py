"""Speculative decoding with a smaller model as the drafter: the 0.5B proposes a few tokens
greedily, the 1.5B checks them in one batch and keeps the ones it would have chosen itself, so
greedy output is unchanged. llama-cpp-python only takes a `draft_model` that returns token ids;
this is one that runs a second llama_cpp.Llama over the same vocabulary."""
from __future__ import annotations

import time
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_speculative import LlamaDraftModel

from core.errors import ConfigError

_PROBE = "def parse(path: str) -> dict:\n    \"\"\"Read the TOML file at `path`.\"\"\"  # café ✓"


class SpeculativeLlama(llama_cpp.Llama):
    """A llama_cpp.Llama for speculative decoding (any `draft_model`) that asks llama.cpp for
    every position's logits only in the short batches that check a draft.

    llama-cpp-python turns `logits_all` on whenever a draft model is given: the prompt then pays
    for the vocabulary projection at each of its tokens and copies them all into `scores`, which
    only holds n_batch rows, so any prompt over 512 tokens fails with a numpy broadcast
    ValueError. Sampling reads the logits from the context, so nothing else needs them."""

    def __init__(self, *args: Any, verify_batch: int, **kw: Any):
        super().__init__(*args, **kw)
        self._verify_batch = verify_batch  # the last sampled token + the draft

    def eval(self, tokens):
        every = len(tokens) <= self._verify_batch
        self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
        for i in range(0, len(tokens), self.n_batch):
            batch = tokens[i:i + self.n_batch]
            self._batch.set_batch(batch=batch, n_past=self.n_tokens, logits_all=every)
            self._ctx.decode(self._batch)
            self.input_ids[self.n_tokens:self.n_tokens + len(batch)] = batch
            self.n_tokens += len(batch)
            self._requires_eval = False


class SmallModelDraft(LlamaDraftModel):
    """Drafts up to `num_pred_tokens` tokens greedily with `llama`, a smaller model sharing the
    target's tokenizer. Its KV cache is kept across calls: only the tokens after the longest
    prefix it has already evaluated are evaluated again (the target's rejections roll it back).
    With `context_tokens` > 0 it reads only the last that many tokens of each new prompt, so that
    it need not evaluate the whole prompt again after the target did."""

    def __init__(self, llama, num_pred_tokens: int = 4, context_tokens: int = 0):
        self.llama = llama
        self.num_pred_tokens = num_pred_tokens
        self.context_tokens = context_tokens
        self._offset = 0  # position in the target's tokens of the drafter's first token
        self._is_eog = lambda t: bool(llama_cpp.llama_vocab_is_eog(llama._model.vocab, t))
        self._n_vocab = llama.n_vocab()
        self._pending: tuple[int, list[int]] = (0, [])  # where the last draft starts, and it
        self.reset_stats()

    def reset_stats(self) -> None:
        """Start counting drafted and accepted tokens afresh (call between prompts)."""
        self.drafted = 0  # tokens proposed whose fate was seen at the next call
        self.accepted = 0  # of those, the ones the target kept
        self.seconds = 0.0  # spent in the draft model (its prompt evaluation included)
        self._pending = (0, [])

    def check_vocab(self, target, target_name: str, draft_name: str) -> None:
        """ConfigError unless `target` and the drafter have the same vocabulary (same size, and
        the same ids for a probe text): otherwise every drafted id would mean another token."""
        text = _PROBE.encode()
        same = (target.n_vocab() == self._n_vocab
                and target.tokenize(text, add_bos=False) == self.llama.tokenize(text, add_bos=False))
        if not same:
            raise ConfigError(f"draft_model {draft_name!r} cannot draft for {target_name!r}: their vocabularies "
                              f"differ ({self._n_vocab} vs {target.n_vocab()} tokens); choose a draft model of the "
                              f"same family or set draft_model = \"\"")

    def __call__(self, input_ids: np.ndarray, /, **kwargs: Any) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self._draft([int(t) for t in input_ids])
        finally:
            self.seconds += time.perf_counter() - t0

    def _draft(self, ids: list[int]) -> np.ndarray:
        self._settle(ids)
        d = self.llama
        view = ids[self._offset:]
        common = self._common(view)
        # more rolled back than a rejected draft explains: a new prompt, windowed afresh
        if self.context_tokens and (d.n_tokens == 0 or d.n_tokens - common > self.num_pred_tokens):
            self._offset = max(0, len(ids) - self.context_tokens)
            view = ids[self._offset:]
            common = self._common(view)
        common = min(common, len(view) - 1)  # evaluate at least the last token: its logits give the first draft
        d.n_tokens = common  # Llama.eval drops the KV cache from here on
        want = min(self.num_pred_tokens, d.n_ctx() - len(view))
        if want <= 0:
            return np.array([], dtype=np.intc)
        d.eval(view[common:])
        out: list[int] = []
        while True:
            logits = np.ctypeslib.as_array(d._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
            token = int(np.argmax(logits))
            if self._is_eog(token):
                break
            out.append(token)
            if len(out) >= want:
                break
            d.eval([token])
        self._pending = (len(ids), out)
        return np.array(out, dtype=np.intc)

    def _common(self, view: list[int]) -> int:
        """Length of the longest common prefix of `view` and what the drafter has evaluated."""
        n = min(self.llama.n_tokens, len(view))
        differ = np.flatnonzero(self.llama.input_ids[:n] != np.asarray(view[:n]))
        return int(differ[0]) if len(differ) else n

    def _settle(self, ids: list[int]) -> None:
        """Count how many tokens of the last draft the target kept: they now follow in `ids`."""
        start, draft = self._pending
        if not draft or len(ids) <= start:
            return
        kept = 0
        for a, b in zip(draft, ids[start:]):
            if a != b:
                break
            kept += 1
        self.drafted += len(draft)
        self.accepted += kept
        self._pending = (0, [])

    @property
    def acceptance(self) -> float | None:
        """Share of settled drafted tokens the target kept (None before any)."""
        return self.accepted / self.drafted if self.drafted else None
