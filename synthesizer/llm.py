"""The local LLM: llama-cpp-python models loaded once per process, and a LlamaIndex
LLM over them that applies each GGUF's own chat template."""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (ChatMessage, ChatResponse, ChatResponseGen,
                                              CompletionResponse, CompletionResponseGen, LLMMetadata,
                                              MessageRole)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from core.errors import ModelUnavailable
from synthesizer.backends import load_ggml_backends
from synthesizer.models import model_path
from synthesizer.shaping import prose_only, words, written_words
from synthesizer.threads import threads_for_now

STOP = ["<|im_end|>", "<|endoftext|>"]
_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()
_OPEN_MARKER = re.compile(r"\[[\d, ]*$")  # a citation marker still being written


def load_llama(name: str, n_ctx: int, n_threads: int, prompt_lookup_tokens: int = 0,
               flash_attn: bool = False, draft_model: str = "", draft_tokens: int = 4, draft_context_tokens: int = 0):
    """A llama_cpp.Llama for model `name`, created once per process and reused. With
    `prompt_lookup_tokens` > 0 it decodes speculatively, drafting that many tokens from
    n-grams of the prompt (answers reuse the passages' words); with `draft_model` (a model name)
    that smaller model drafts `draft_tokens` tokens (reading only the last `draft_context_tokens` of
    the prompt when > 0). `flash_attn` turns on llama.cpp's
    flash attention, which evaluates long prompts faster on CPU."""
    import llama_cpp

    path = model_path(name)
    key = (path, n_ctx, n_threads, prompt_lookup_tokens, flash_attn, draft_model, draft_tokens, draft_context_tokens)
    with _LOCK:
        if key not in _CACHE:
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
            try:  # llama.cpp edge: a backend that will not load is OSError, a bad GGUF ValueError
                load_ggml_backends(model_path("smollm2-135m") if _smol_ok() else path)
                args = dict(model_path=path, n_ctx=n_ctx, n_threads=n_threads, flash_attn=flash_attn, verbose=False)
                if draft_model:
                    from synthesizer.speculation import SmallModelDraft, SpeculativeLlama
                    small = llama_cpp.Llama(**{**args, "model_path": model_path(draft_model)})
                    draft = SmallModelDraft(small, num_pred_tokens=draft_tokens, context_tokens=draft_context_tokens)
                    llama = SpeculativeLlama(**args, draft_model=draft, verify_batch=draft_tokens + 1)
                    draft.check_vocab(llama, name, draft_model)
                elif prompt_lookup_tokens > 0:
                    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
                    from synthesizer.speculation import SpeculativeLlama
                    llama = SpeculativeLlama(**args, verify_batch=prompt_lookup_tokens + 1,
                                             draft_model=LlamaPromptLookupDecoding(num_pred_tokens=prompt_lookup_tokens))
                else:
                    llama = llama_cpp.Llama(**args)
                _CACHE[key] = llama
            except (OSError, ValueError, RuntimeError) as exc:
                raise ModelUnavailable(f"llama.cpp could not load {path}: {exc}") from None
        return _CACHE[key]


def _smol_ok() -> bool:
    try:
        model_path("smollm2-135m")
        return True
    except ModelUnavailable:
        return False


_SPELLINGS: dict[str, dict[str, list[int]]] = {}


def _spellings(llama) -> dict[str, list[int]]:
    """Each token's text, stripped and lower-cased, to the tokens that write it (built once per
    vocabulary, which Qwen2.5's models share: ~0.5 s for its 151k tokens)."""
    n = llama.n_vocab()
    key = f"{n}:" + llama.detokenize(list(range(0, n, max(1, n // 64)))).decode("utf-8", "replace")
    if key not in _SPELLINGS:
        out: dict[str, list[int]] = {}
        for t in range(n):
            text = llama.detokenize([t]).decode("utf-8", "ignore").strip().lower()
            if text:
                out.setdefault(text, []).append(t)
        _SPELLINGS[key] = out
    return _SPELLINGS[key]


class NoCopy:
    """A llama.cpp logits processor that keeps the answer in the model's own words: once the
    last `n` words written stand in the prompt in that order, the tokens that would write the
    prompt's next word lose `penalty` logits, more the longer the copy runs (up to `max_scale`
    times: a list the model knows well, copied item by item, outlasts a flat penalty); the push
    fades one step per word of the model's own. Words are compared as the copy measure reads
    them (`shaping.words`): line breaks, punctuation, backticks, case and citation markers do not
    hide a copy. Code (inside ``` fences) may be copied: it is quoted whole."""

    def __init__(self, llama, penalty: float, n: int = 5, max_scale: float = 4.0, written: int = 0):
        self.llama, self.penalty, self.n, self.max_scale = llama, penalty, n, max_scale
        self.written = written  # the prompt's last tokens are the model's own reply, being continued
        self.start = -1
        self.calls = 0  # one call per sampled token
        self.streak = 0  # words that went on with a copy of the prompt, less one per word of its own
        self.next: dict[tuple[str, ...], set[str]] = {}  # n words -> the prompt's next word, as written there
        self._last: tuple[int, str] = (0, "")  # (word count, last word) at the previous call
        self._ids: dict[str, set[int]] = {}
        self._starts: dict[str, list[int]] | None = None  # the vocabulary's spellings, looked up once

    def __call__(self, input_ids, scores):
        ids = [int(t) for t in input_ids]
        if self.start < 0:  # first call: everything so far is the prompt, less the reply being continued
            self.start = len(ids) - self.written
            shown = written_words(self._text(ids[:self.start]))
            keys = [w.lower() for w in shown]
            for i in range(len(keys) - self.n):
                self.next.setdefault(tuple(keys[i:i + self.n]), set()).add(shown[i + self.n])
            reply = self._words(self._text(ids[self.start:]))
            for j in range(self.n, len(reply)):  # a copy running in the reply so far keeps its push
                self._count(reply[j] in {w.lower() for w in self.next.get(tuple(reply[j - self.n:j]), ())})
            self._last = (len(reply), reply[-1] if reply else "")
        # tokens made so far: under speculative decoding input_ids also holds the draft being
        # checked, past the position now sampled, so count calls rather than take the tail
        text = self._text(ids[self.start:self.start + self.written + self.calls])
        self.calls += 1
        if text.count("```") % 2:
            return scores  # inside a code block
        made = self._words(text)
        if len(made) < self.n:
            return scores
        follow = self.next.get(tuple(made[-self.n:]))
        if (len(made), made[-1]) != self._last:  # a word was written (or is being written)
            self._last = (len(made), made[-1])
            if follow:
                self._count(True)
            elif not (text[-1:].isalnum() and self._inside_copied_word(made)):
                self._count(False)
        if follow:
            push = self.penalty * min(self.max_scale, 1.0 + (max(self.streak, 1) - 1) / self.n)
            for word in follow:
                for t in self._first_ids(word):
                    scores[t] -= push
        return scores

    def _count(self, copied: bool) -> None:
        if copied:
            self.streak += 1
        elif self.streak:
            # decay rather than reset: a word of its own between two copied stretches breaks the
            # match for a few words, not the copy a reader sees
            self.streak -= 1

    def _inside_copied_word(self, made: list[str]) -> bool:
        """Whether the last word, still being written, begins the prompt's next word of a copy."""
        before = self.next.get(tuple(made[-self.n - 1:-1])) if len(made) > self.n else None
        return bool(before) and any(w.lower().startswith(made[-1]) for w in before)

    def _first_ids(self, word: str) -> set[int]:
        """The tokens that begin writing `word`: every token that spells a start of it (any case,
        after a space or not), so that the word cannot be written in other pieces instead
        (" d" "iction" "ar" "." was written for " dictionary")."""
        if word not in self._ids:
            if self._starts is None:
                self._starts = _spellings(self.llama)
            w = word.lower()
            self._ids[word] = {t for k in range(1, len(w) + 1) for t in self._starts.get(w[:k], ())}
        return self._ids[word]

    def _text(self, ids: list[int]) -> str:
        return self.llama.detokenize(ids).decode("utf-8", "ignore")

    @staticmethod
    def _words(text: str) -> list[str]:
        return words(prose_only(_OPEN_MARKER.sub("", text)))


class LlamaCppLLM(CustomLLM):
    """LlamaIndex LLM over a llama-cpp-python model; chat uses the template in the GGUF
    (ChatML for SmolLM2 and Qwen2.5) and stops at <|im_end|>."""

    model_name: str = "qwen2.5-coder-0.5b"
    n_ctx: int = 2048
    n_threads: int = 2
    max_tokens: int = 160
    temperature: float = 0.0
    adaptive_threads: bool = True  # use fewer threads while other processes keep cores busy
    prompt_lookup_tokens: int = 0  # > 0: prompt-lookup speculative decoding
    draft_model: str = ""  # a smaller model of the same vocabulary drafting for this one ("" = none)
    draft_tokens: int = 4  # tokens the draft model proposes per step
    copy_penalty: float = 0.0  # > 0: NoCopy logits processor against long verbatim runs from the prompt
    flash_attn: bool = True  # llama.cpp flash attention (faster prompt evaluation)
    _llama: Any = PrivateAttr(default=None)
    _threads_used: int = PrivateAttr(default=0)
    _formatter: Any = PrivateAttr(default=None)

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self._llama = load_llama(self.model_name, self.n_ctx, self.n_threads, self.prompt_lookup_tokens,
                                 self.flash_attn, self.draft_model, self.draft_tokens)
        if self.copy_penalty > 0:
            _spellings(self._llama)  # the copy check's table, built with the model rather than in an answer

    @property
    def llama(self):
        return self._llama

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.n_ctx, num_output=self.max_tokens, is_chat_model=True,
                           model_name=self.model_name)

    def prefill(self, messages: list[dict]) -> None:
        """Evaluate the chat-formatted start `messages` (the last one left open) so that the next
        prompt beginning the same way reuses its KV cache instead of evaluating it again."""
        self._set_threads()
        out = self._llama.create_chat_completion(messages, max_tokens=1, temperature=0.0)
        del out

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8", "ignore"), add_bos=False, special=False))

    @property
    def threads_used(self) -> int:
        """Threads the last generation ran with."""
        return self._threads_used

    def _set_threads(self) -> None:
        n = threads_for_now(self.n_threads) if self.adaptive_threads else self.n_threads
        self._llama._ctx.set_n_threads(n, n)  # the Llama is shared: set it every time
        drafter = getattr(self._llama.draft_model, "llama", None)
        if drafter is not None:
            drafter._ctx.set_n_threads(n, n)
        self._threads_used = n

    def _gen_kwargs(self, kw: dict, written: int = 0) -> dict:
        self._set_threads()
        out = {"max_tokens": kw.get("max_tokens", self.max_tokens),
               "temperature": kw.get("temperature", self.temperature),
               "stop": STOP, "repeat_penalty": kw.get("repeat_penalty", 1.1)}
        if self.copy_penalty > 0:
            from llama_cpp import LogitsProcessorList
            out["logits_processor"] = LogitsProcessorList([NoCopy(self._llama, self.copy_penalty, written=written)])
        return out

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
        out = self._llama.create_completion(prompt, **self._gen_kwargs(kw))
        return CompletionResponse(text=out["choices"][0]["text"], raw=out)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for part in self._llama.create_completion(prompt, stream=True, **self._gen_kwargs(kw)):
                delta = part["choices"][0]["text"]
                text += delta
                yield CompletionResponse(text=text, delta=delta)
        return gen()

    @property
    def can_continue(self) -> bool:
        """Whether `stream_continue` can render this model's chat template (the GGUF carries one)."""
        return self._chat_formatter() is not None

    def _chat_formatter(self):
        """The GGUF's chat template as create_chat_completion renders it, built once; None without one."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
            llama = self._llama
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                return None
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=llama._model.token_get_text(llama.token_eos()),
                bos_token=llama._model.token_get_text(llama.token_bos()))
        return self._formatter

    def stream_continue(self, messages: list[dict], reply_start: str) -> Iterator[str]:
        """Stream the rest of the assistant's reply to `messages` when it begins with `reply_start`
        (rendered with the GGUF's own chat template, as create_chat_completion does); the whole
        reply stays within `max_tokens`."""
        formatter = self._chat_formatter()
        if formatter is None:
            raise ModelUnavailable(f"{self.model_name} has no chat template")
        llama = self._llama
        prompt = formatter(messages=messages).prompt + reply_start
        # the reply's start is the model's own text: the copy check reads it as written, not as prompt
        written = len(llama.tokenize(reply_start.encode("utf-8"), add_bos=False, special=False)) if reply_start else 0
        room = max(16, self.max_tokens - written)
        for part in llama.create_completion(prompt, stream=True, **self._gen_kwargs({"max_tokens": room}, written)):
            if part["choices"][0]["text"]:
                yield part["choices"][0]["text"]

    @staticmethod
    def _messages(messages: Sequence[ChatMessage]) -> list[dict]:
        return [{"role": m.role.value, "content": m.content or ""} for m in messages]

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kw: Any) -> ChatResponse:
        out = self._llama.create_chat_completion(self._messages(messages), **self._gen_kwargs(kw))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT,
                                                content=out["choices"][0]["message"]["content"]), raw=out)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kw: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            text = ""
            for part in self._llama.create_chat_completion(self._messages(messages), stream=True,
                                                           **self._gen_kwargs(kw)):
                delta = part["choices"][0]["delta"].get("content") or ""
                if not delta:
                    continue
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)
        return gen()

