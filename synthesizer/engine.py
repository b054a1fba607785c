"""Answering: a LlamaIndex query engine over our retriever and a local llama.cpp model,
with fast / slow / auto modes, verified citations, abstention and an extractive fallback."""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field, replace

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.base.response.schema import Response
from llama_index.core.llms import LLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import QueryBundle
from pydantic import ConfigDict

from core.errors import ModelUnavailable, QueryError
from retriever.hybrid import Hit, HybridRetriever
from retriever.llamaindex_adapter import FathomRetriever, hit_to_node, node_to_hit
from synthesizer.citations import looks_like_abstention, shown_support, support_span, verify
from synthesizer.config import AnswerConfig
from synthesizer.decompose import sub_questions
from synthesizer.llm import LlamaCppLLM
from synthesizer.prompts import ABSTAIN_TEXT, build_lead_messages, build_messages, focus, prompt_prefix
from synthesizer.shaping import ends_complete, repeats, segments
from synthesizer.textutil import content_terms, named_terms, split_sentences
from synthesizer.types import Answer, Citation, SentenceSupport, Timings

_COMPLEX = re.compile(r"\b(why|explain|compare|difference|differences|versus|vs\.?|pros|cons|"
                      r"trade-?offs?|how does|how do .* work|when should|best way|steps)\b", re.I)

_DEADLINE = "generation stopped at the mode's deadline"
LLMFactory = Callable[[str, int, int], LLM]  # (model name, context tokens, max new tokens) -> any LlamaIndex LLM


def default_llm_factory(config: AnswerConfig) -> LLMFactory:
    slow = (config.slow_model, config.slow_n_ctx, config.slow_max_tokens)
    fast = (config.fast_model, config.fast_n_ctx, config.fast_max_tokens)

    def make(model: str, n_ctx: int, max_tokens: int) -> LlamaCppLLM:
        drafted = (model, n_ctx, max_tokens) == slow != fast  # only the slow model takes the draft model
        return LlamaCppLLM(model_name=model, n_ctx=n_ctx, n_threads=config.n_threads, max_tokens=max_tokens,
                           adaptive_threads=config.adaptive_threads,
                           prompt_lookup_tokens=config.prompt_lookup_tokens, copy_penalty=config.copy_penalty,
                           flash_attn=config.flash_attn, draft_model=config.draft_model if drafted else "",
                           draft_tokens=config.draft_tokens)
    return make


@dataclass
class _Run:
    """The state of one question as it moves through the stages."""

    question: str
    mode: str  # asked for; after choose(): the mode that runs
    t0: float
    notes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)  # the passages' candidates, reranked when the mode reranks
    fused: list[Hit] = field(default_factory=list)  # the fused order, before any rerank: what the gate reads
    coverage: float | None = None  # IDF-weighted share of the question's terms in the best fused hits (set by the gate)
    focused: bool = False  # auto's slow answer on the best few passages' densest windows
    reason: str = ""
    because: str = ""  # prefix of an abstention's reason (auto says which mode it chose)


class Synthesizer:
    """Answers questions from a HybridRetriever: retrieve -> choose mode -> gate -> generate ->
    verify. LLMs are created on first use (or by `warm`) and kept."""

    def __init__(self, retriever: HybridRetriever, config: AnswerConfig = AnswerConfig(),
                 llm_factory: LLMFactory | None = None):
        self.retriever = retriever
        self.config = config
        self.llm_factory = llm_factory or default_llm_factory(config)
        self._llms: dict[tuple[str, int, int], LLM] = {}
        self._idf: dict[str, float] = {}

    # --- pieces -----------------------------------------------------------------
    def llm(self, mode: str) -> LLM:
        c = self.config
        key = ((c.fast_model, c.fast_n_ctx, c.fast_max_tokens) if mode == "fast"
               else (c.slow_model, c.slow_n_ctx, c.slow_max_tokens))
        if key not in self._llms:
            self._llms[key] = self.llm_factory(*key)
        return self._llms[key]

    def warm(self, modes: tuple[str, ...] = ("fast", "slow")) -> dict[str, float]:
        """Load the models of `modes` (and the reranker for slow) now rather than on the first
        question, and evaluate the fixed start of the prompt so its KV cache is reused.
        Returns the seconds each took; a model that cannot load is left to the fallback."""
        out: dict[str, float] = {}
        for mode in modes:
            t = time.perf_counter()
            try:
                llm = self.llm(mode)
                if isinstance(llm, LlamaCppLLM):
                    llm.prefill(prompt_prefix(allow_abstain=mode != "fast"
                                              and self.config.abstain_instruction != "never"))
            except ModelUnavailable:
                continue
            out[mode] = round(time.perf_counter() - t, 2)
        if "slow" in modes and self.config.slow_rerank:
            t = time.perf_counter()
            try:
                from retriever.rerank import load_reranker
                load_reranker(self.retriever.config.rerank_threads, self.retriever.config.rerank_max_tokens)
                out["rerank"] = round(time.perf_counter() - t, 2)
            except ModelUnavailable:
                pass
        return out

    def idf(self, terms: set[str]) -> dict[str, float]:
        """IDF of content terms in the index (document frequencies from the index, cached)."""
        index = self.retriever.index
        if getattr(self, "_idf_for", None) is not index:
            self._idf, self._idf_for = {}, index
        n = max(1, len(index))
        for t in terms - self._idf.keys():
            self._idf[t] = math.log((n + 1) / (index.document_frequency(t) + 0.5))
        return {t: self._idf[t] for t in terms}

    def li_retriever(self, k: int, rerank: bool | None = None) -> FathomRetriever:
        # Up to 3 chunks of one page: a long FAQ answer spans several chunks.
        return FathomRetriever(self.retriever, k=k, max_per_page=3, rerank=rerank)

    def coverage(self, question: str, hits: list[Hit]) -> float:
        return evidence_coverage(question, hits, self.idf(content_terms(question)))

    def choose_mode(self, question: str, hits: list[Hit]) -> tuple[str, bool, str]:
        """auto mode: (mode, focused, reason). Fast when retrieval is confident and the question
        simple; slow when the question is complex, focused on the best few passages' densest
        windows when retrieval is confident; whole slow mode when retrieval is unsure."""
        words = len(question.split())
        top = hits[0] if hits else None
        agree = bool(top and top.bm25_rank and top.dense_rank and top.bm25_rank <= 3 and top.dense_rank <= 3)
        coverage = self.coverage(question, hits[:3])
        complex_q = bool(_COMPLEX.search(question)) or words > 20
        signals = (f"engines {'agree' if agree else 'disagree'} on the top passage, "
                   f"{coverage:.0%} of key terms found, {'complex' if complex_q else 'simple'} question "
                   f"({words} words)")
        confident = agree and coverage >= 0.75
        if confident and not complex_q:
            return "fast", False, f"auto chose fast: {signals}"
        c = self.config
        if confident and c.auto_slow_passages and not sub_questions(question):
            return "slow", True, (f"auto chose slow, focused on the best {c.auto_slow_passages} passages "
                                  f"(retrieval is confident): {signals}")
        return "slow", False, f"auto chose slow: {signals}"

    def passages_for(self, mode: str, focused: bool = False) -> tuple[int, int]:
        """(passages quoted, words quoted of each: 0 = whole) for a mode; `focused` is auto's
        slow answer when retrieval is confident."""
        c = self.config
        if mode == "fast":
            return c.fast_passages, c.fast_passage_words
        if focused:
            return c.auto_slow_passages, c.auto_slow_passage_words
        return c.slow_passages, c.slow_passage_words

    # --- answering ----------------------------------------------------------------
    def answer(self, question: str, mode: str | None = None) -> Answer:
        final = None
        for item in self.stream(question, mode):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def stream(self, question: str, mode: str | None = None) -> Iterator[str | Answer]:
        """Yield answer text deltas as the model writes them, then the final verified Answer."""
        run = self._start(question, mode)
        self._retrieve(run)
        self._choose(run)
        self._expand(run)
        refusal = self._gate(run)
        if refusal is not None:
            yield refusal
            return
        passages = merge_sections(run.hits)[:self.passages_for(run.mode, run.focused)[0]]
        try:
            llm = self._load(run)
        except ModelUnavailable as exc:
            run.notes.append(f"LLM unavailable ({exc}); extractive answer")
            yield self._extractive(run, passages)
            return
        gen = self._generate(run, llm, passages)
        try:
            while True:
                yield next(gen)
        except StopIteration as done:
            text, passages = done.value
        if text is None:
            yield self._extractive(run, passages)
            return
        yield self._verify(run, llm, text, passages)

    # --- the stages -------------------------------------------------------------------
    def _start(self, question: str, mode: str | None) -> _Run:
        c = self.config
        t0 = time.perf_counter()
        mode = mode or c.mode
        if mode not in ("fast", "slow", "auto"):
            raise QueryError(f"unknown mode {mode!r}; use fast, slow or auto")
        question = (question or "").strip()
        if not question:
            raise QueryError("the question is empty")
        run = _Run(question=question, mode=mode, t0=t0)
        if len(question) > c.max_question_chars:
            run.notes.append(f"question truncated from {len(question)} to {c.max_question_chars} characters")
            run.question = question[:c.max_question_chars]
        return run

    def _retrieve(self, run: _Run) -> None:
        """One unreranked retrieval, as deep as a rerank would look when the mode may rerank.
        The fused order is kept for the gate, so that a question gets the same evidence, and the
        same decision, in every mode."""
        k = self._hits_wanted()
        if self._reranks(run.mode) or (run.mode == "auto" and self._reranks("slow")):
            k = max(k, self.retriever.config.rerank_candidates)
        nodes = self.li_retriever(k, rerank=False).retrieve(QueryBundle(run.question))
        run.hits = run.fused = [node_to_hit(n) for n in nodes]
        run.timings["retrieve_ms"] = _ms(run.t0)

    def _hits_wanted(self) -> int:
        c = self.config
        return max(c.fast_passages, c.slow_passages, c.auto_slow_passages)

    def _reranks(self, mode: str) -> bool:
        return self.retriever.config.rerank or (self.config.slow_rerank and mode == "slow")

    def _choose(self, run: _Run) -> None:
        """Settle the mode (auto picks), rerank if it reranks, and keep as many hits as a mode quotes
        from, so that auto's slow answer reads the same passages as slow mode's."""
        if run.mode == "auto":
            run.mode, run.focused, run.reason = self.choose_mode(run.question, run.hits)
            run.because = run.reason + "; abstained: "  # an abstention still says which mode auto chose
        else:
            run.reason = f"{run.mode} mode requested"
        if self._reranks(run.mode) and len(run.hits) > 1:
            t = time.perf_counter()
            run.hits, notes = self.retriever.rerank(run.question, run.hits)
            run.notes.extend(notes)
            run.timings["rerank_ms"] = _ms(t)
        run.hits = run.hits[:self._hits_wanted()]

    def _expand(self, run: _Run) -> None:
        """Slow mode, compound question: retrieve for each part too, and interleave the lists
        so that every part's best passages are among those quoted."""
        if run.mode != "slow" or not self.config.sub_questions:
            return
        parts = sub_questions(run.question)
        if not parts:
            return
        t = time.perf_counter()
        k = self.config.slow_passages
        # the parts are not reranked: a cross-encoder pass per part tripled retrieval time
        parts_hits = [[node_to_hit(n) for n in self.li_retriever(k, rerank=False).retrieve(QueryBundle(p))]
                      for p in parts]
        run.hits = _interleave([run.hits] + parts_hits)
        run.fused = _interleave([run.fused[:k]] + parts_hits)
        run.notes.append(f"compound question: also searched its {len(parts)} parts ("
                         + "; ".join(parts) + ")")
        run.timings["sub_questions_ms"] = _ms(t)

    def _gate(self, run: _Run) -> Answer | None:
        """An abstention when retrieval found nothing or too little of the question."""
        if not run.hits:
            return self._abstain(run, "no indexed passage matches the question")
        # The fused order, not the cross-encoder's: its top passages can share more words with a
        # question the site does not answer (measured: NumPy, black and conda questions over the
        # Python docs), and slow mode should not answer what fast mode refuses.
        coverage = run.coverage = self.coverage(run.question, run.fused[:3])
        if coverage < self.config.min_evidence:
            return self._abstain(run, f"weak evidence: only {coverage:.0%} of the question's key terms appear "
                                      "in the best sources")
        missing = missing_names(run.question, run.fused[:3])
        if missing and coverage < self.config.borderline_evidence:
            return self._abstain(run, f"the best sources never mention {', '.join(missing)} "
                                      f"(and hold only {coverage:.0%} of the question's key terms)")
        return None

    def _load(self, run: _Run) -> LLM:
        t = time.perf_counter()
        llm = self.llm(run.mode)
        if time.perf_counter() - t > 0.05:  # first use in this process: the model was loaded
            run.timings["model_load_ms"] = _ms(t)
        return llm

    def _generate(self, run: _Run, llm: LLM, passages: list[Hit]
                  ) -> Generator[str, None, tuple[str | None, list[Hit]]]:
        """Stream the model's draft; returns (draft, passages shown), draft None when the
        extractive fallback must answer instead."""
        c = self.config
        fast = run.mode == "fast"
        lead = self.lead_prompt(run, llm, passages)
        if lead is not None:
            first, messages, used = lead
            source = _lead_stream(llm, first, messages)
        else:
            messages, used = self.prompt(run, llm, passages)
            source = _stream(llm, messages)
        prompt_text = messages[0]["content"] + messages[1]["content"]
        passages = passages[:used]
        run.timings["prompt_tokens"] = _token_counter(llm)(prompt_text)
        # a model's one-time load does not eat into the mode's budget
        deadline = (run.t0 + run.timings.get("model_load_ms", 0.0) / 1000
                    + (c.fast_deadline_s if fast else c.slow_deadline_s))
        text, first_token, n_tokens = "", None, 0
        t_gen = time.perf_counter()
        try:
            for delta in source:
                if first_token is None:
                    first_token = time.perf_counter()
                text += delta
                n_tokens += 1
                yield delta
                if time.perf_counter() > deadline:
                    run.notes.append(_DEADLINE)
                    break
                if any(ch in delta for ch in ".!?\n") and _looping(text):
                    run.notes.append("generation stopped: the model began repeating itself")
                    break
        except (RuntimeError, ValueError, OSError) as exc:  # llama.cpp failures
            run.notes.append(f"LLM failed ({exc}); extractive answer")
            return None, passages
        t_end = time.perf_counter()
        gen_s = t_end - t_gen
        if first_token is not None and n_tokens > 1 and t_end > first_token:
            run.timings["decode_tokens_per_s"] = round((n_tokens - 1) / (t_end - first_token), 1)
        run.timings.update(first_token_ms=_ms(run.t0, first_token or time.perf_counter()),
                           generate_ms=round(gen_s * 1000, 1), tokens=n_tokens,
                           tokens_per_s=round(n_tokens / gen_s, 1) if gen_s > 0 else 0.0)
        if getattr(llm, "threads_used", None):
            run.timings["threads"] = llm.threads_used
        if not text.strip() and _DEADLINE in run.notes:
            return None, passages
        return text, passages

    def prompt(self, run: _Run, llm: LLM, passages: list[Hit]) -> tuple[list[dict], int]:
        """The chat messages for `run`'s mode, and how many of `passages` they quote."""
        fast = run.mode == "fast"
        return build_messages(run.question, self._quoted(run, passages), _token_counter(llm), self._budget(run),
                              allow_abstain=self._offer_abstain(run, passages), inline_citations=not fast)

    def lead_prompt(self, run: _Run, llm: LLM, passages: list[Hit]) -> tuple[list[dict], list[dict], int] | None:
        """The quick start (`fast_lead_passages`, `slow_lead_passages`): the prompt quoting only the
        best passages, for the first sentence, and the one quoting them all, which goes on with it;
        None when it does not apply (no lead, too few passages, an LLM that cannot go on with a reply)."""
        fast = run.mode == "fast"
        lead = self.config.fast_lead_passages if fast else self.config.slow_lead_passages
        if lead <= 0 or len(passages) <= lead or not getattr(llm, "can_continue", False):
            return None
        first, full, used = build_lead_messages(run.question, self._quoted(run, passages), _token_counter(llm),
                                                self._budget(run), lead, allow_abstain=self._offer_abstain(run, passages),
                                                inline_citations=not fast)
        return (first, full, used) if used > lead else None

    def _quoted(self, run: _Run, passages: list[Hit]) -> list[str]:
        """Each passage as the prompt quotes it: its header, then its densest window or all of it."""
        c = self.config
        q_terms = content_terms(run.question)
        window = self.passages_for(run.mode, run.focused)[1]
        keep_code = c.slow_keep_code and run.mode != "fast"
        return [f"{_header(h)}: " + (focus(h.text, q_terms, window, keep_code) if window else h.text) for h in passages]

    def _budget(self, run: _Run) -> int:
        """Prompt tokens the mode's context leaves after its answer."""
        c = self.config
        return c.fast_n_ctx - c.fast_max_tokens if run.mode == "fast" else c.slow_n_ctx - c.slow_max_tokens

    def _offer_abstain(self, run: _Run, passages: list[Hit]) -> bool:
        """Whether the prompt offers NOT IN SOURCES. The small fast model answers it far too eagerly
        when offered, so fast mode leaves abstention to the evidence gate before and the verifier
        after generation; borderline: offered when the passages read hold little of the question."""
        c = self.config
        if run.mode == "fast":
            return False
        return c.abstain_instruction == "always" or (
            c.abstain_instruction == "borderline" and self.coverage(run.question, passages[:3]) < c.borderline_evidence)

    def _verify(self, run: _Run, llm: LLM, text: str, passages: list[Hit]) -> Answer:
        """Check every sentence against its source; keep code only as quoted from it."""
        c = self.config
        model = _model_name(llm)
        if looks_like_abstention(text):
            return self._abstain(run, "the model found no answer in the sources", model)
        checked = verify(text, [f"{h.title} {h.heading} {h.text}" for h in passages], c.min_support,
                         drop_unsupported=True)
        for count, what in ((checked.dropped, "unsupported sentence(s) removed"),
                            (checked.invalid_markers, "citation marker(s) to no source removed"),
                            (checked.code_dropped, "code block(s) found in no source removed"),
                            (checked.fragments_dropped, "unfinished sentence(s) removed"),
                            (checked.repeats_dropped, "repeated sentence(s) removed"),
                            (checked.questions_dropped, "question(s) echoed from the sources removed"),
                            (checked.pointers_dropped, "pointer(s) to a code example not shown removed")):
            if count:
                run.notes.append(f"{count} {what}")
        if not checked.kept or not checked.cited:
            if _DEADLINE in run.notes:  # cut short, not refuted: quote the sources instead
                run.notes.append("the draft was cut before a whole supported sentence; extractive answer")
                return self._extractive(run, passages)
            return self._abstain(run, "no sentence of the draft answer was supported by the sources", model)
        cites = tuple(_citation(i + 1, passages[n]) for i, n in enumerate(checked.cited))
        shown_ok, shown = shown_support(checked.text, [f"{passages[n].title} {passages[n].heading} {passages[n].text}"
                                                        for n in checked.cited], c.min_support)
        # model_citations_*: markers the model wrote itself (fast mode asks for none);
        # citations_*: every marker shown in the final answer, re-checked against its passage
        run.timings.update(model_citations_supported=checked.supported_citations,
                           model_citations_total=checked.total_citations,
                           citations_supported=shown_ok, citations_total=shown)
        number = {n: i + 1 for i, n in enumerate(checked.cited)}
        sentences = tuple(_sentence_support(claim, tuple(number[n] for n in refs), status, sup,
                                            passages[refs[0]].text if refs else "")
                          for claim, refs, status, sup in checked.sentences)
        return Answer(answer=checked.text, mode=run.mode, reason=run.reason, abstained=False, citations=cites,
                      timings=_timings(run), model=model, notes=tuple(run.notes), sentences=sentences,
                      evidence=run.coverage)

    def _abstain(self, run: _Run, why: str, model: str = "") -> Answer:
        closest = tuple(_citation(i + 1, h) for i, h in enumerate(_distinct_pages(run.hits)[:3]))
        text = ABSTAIN_TEXT + (" The closest sources are listed below." if closest else "")
        return Answer(answer=text, mode=run.mode, reason=run.because + why, abstained=True, citations=closest,
                      timings=_timings(run), model=model, notes=tuple(run.notes), evidence=run.coverage)

    def _extractive(self, run: _Run, passages: list[Hit]) -> Answer:
        """Best-matching sentences of the top passages, each cited."""
        q = content_terms(run.question)
        scored = []
        for i, h in enumerate(passages):
            prose = " ".join(s.text for s in segments(h.text) if not s.code)
            for j, s in enumerate(split_sentences(prose)):
                terms = content_terms(s)
                if len(s) < 20 or not terms or not ends_complete(s):
                    continue
                scored.append((len(q & terms) / max(1, len(q)) - 0.01 * i - 0.001 * j, i, s))
        scored.sort(reverse=True)
        chosen = [(i, s) for score, i, s in scored[:3] if score > 0]
        if not chosen:
            run.because, run.mode = "", "extractive"
            return self._abstain(run, "no sentence of the sources matches the question")
        order: list[int] = []
        for i, _ in chosen:
            if i not in order:
                order.append(i)
        number = {i: n + 1 for n, i in enumerate(order)}
        text = " ".join(_cite_sentence(" ".join(s.split()), number[i]) for i, s in chosen)
        sentences = tuple(_sentence_support(" ".join(s.split()), (number[i],), "supported", 1.0, passages[i].text)
                          for i, s in chosen)
        return Answer(answer=text, mode="extractive", reason=run.reason, abstained=False,
                      citations=tuple(_citation(number[i], passages[i]) for i in order),
                      timings=_timings(run), notes=tuple(run.notes), sentences=sentences, evidence=run.coverage)

    def query_engine(self, mode: str | None = None) -> "FathomQueryEngine":
        """This synthesizer as a LlamaIndex query engine (the path Engine.ask takes)."""
        return FathomQueryEngine(synthesizer=self, mode=mode or self.config.mode)


class FathomQueryEngine(CustomQueryEngine):
    """LlamaIndex query engine: `query(q)` returns a Response whose source_nodes are the cited
    passages and whose metadata holds the Answer and its mode, reason, abstained, per-sentence
    support and timings. `stream_answer(q)` yields the text as written, then the Answer."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    synthesizer: Synthesizer
    mode: str = "auto"

    def stream_answer(self, query_str: str) -> Iterator[str | Answer]:
        return self.synthesizer.stream(query_str, self.mode)

    def custom_query(self, query_str: str) -> Response:
        ans = None
        for item in self.stream_answer(query_str):
            if isinstance(item, Answer):
                ans = item
        assert ans is not None
        return answer_response(ans)


def answer_response(ans: Answer) -> Response:
    """An Answer as a LlamaIndex Response."""
    sources = [hit_to_node(Hit(chunk_id=c.chunk_id, url=c.url, title=c.title, heading=c.heading, text=c.passage,
                               snippet=c.snippet, score=0.0)) for c in ans.citations]
    return Response(response=ans.answer, source_nodes=sources,
                    metadata={"answer": ans, "mode": ans.mode, "reason": ans.reason, "abstained": ans.abstained,
                              "sentences": [asdict(s) for s in ans.sentences], "timings": dict(ans.timings),
                              "notes": list(ans.notes), "model": ans.model})


def merge_sections(hits: list[Hit]) -> list[Hit]:
    """One passage per page section: chunks of the same page and heading become one hit (at the
    rank of the best), their texts joined in page order with the chunk overlap removed, so that
    one section never gets two citation numbers."""
    groups: dict[tuple[str, str], list[Hit]] = {}
    for h in hits:
        groups.setdefault((h.url, h.heading), []).append(h)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        ordered = sorted(members, key=lambda h: h.chunk_id)
        text = ordered[0].text
        for h in ordered[1:]:
            text = _join_overlapping(text, h.text)
        out.append(replace(members[0], text=text))
    return out


def _join_overlapping(a: str, b: str, max_words: int = 120) -> str:
    """a + b without the words that end a and start b again (chunk overlap)."""
    aw, bw = a.split(), b.split()
    for n in range(min(max_words, len(aw), len(bw)), 4, -1):
        if aw[-n:] == bw[:n]:
            rest = b
            for w in bw[:n]:  # drop the first n words of b, keeping its line breaks after them
                rest = rest[rest.index(w) + len(w):]
            return a + rest
    return a + "\n\n" + b


def _looping(text: str) -> bool:
    """True when the last finished prose sentence of a draft repeats an earlier one."""
    prose = " ".join(seg.text for seg in segments(text) if not seg.code)
    done = split_sentences(prose)
    if len(done) < 2:
        return False
    if not ends_complete(done[-1]):
        done = done[:-1]
    return len(done) >= 2 and repeats(done[-1], done[:-1])


def _ms(t0: float, t1: float | None = None) -> float:
    return round(((t1 if t1 is not None else time.perf_counter()) - t0) * 1000, 1)


def _timings(run: _Run) -> Timings:
    run.timings["total_ms"] = _ms(run.t0)
    return Timings(**run.timings)


def _model_name(llm: LLM) -> str:
    return getattr(llm, "model_name", "") or llm.metadata.model_name


def _token_counter(llm: LLM) -> Callable[[str], int]:
    """The model's own token count where it has one; else a safe over-estimate (3 chars a token)."""
    if hasattr(llm, "count_tokens"):
        return llm.count_tokens
    return lambda text: len(text) // 3 + 1


def _stream(llm: LLM, messages: list[dict]) -> Iterator[str]:
    msgs = [ChatMessage(role=MessageRole(m["role"]), content=m["content"]) for m in messages]
    for resp in llm.stream_chat(msgs):
        if resp.delta:
            yield resp.delta


_ABSTAIN_REPLY = "NOT IN SOURCES"


def _lead_stream(llm: LLM, first: list[dict], full: list[dict]) -> Iterator[str]:
    """The first sentence from the `first` prompt (the best passages), then the rest of the answer
    from the `full` prompt (every passage), going on from that sentence.

    `full` begins as `first` does, so the system message and the best passages are not evaluated
    again (the question, the instructions and the first sentence are, after the other passages).
    When the first prompt gets NOT IN SOURCES (the best passages alone do not answer), `full`
    answers afresh; that reply is held back, never streamed."""
    text, shown = "", False
    gen = _stream(llm, first)
    for delta in gen:
        if shown and _first_sentence_done(text) and delta[:1].isspace() and not delta.lstrip().startswith("["):
            break  # the second sentence begins: the other passages come first
        text += delta
        if not shown and _ABSTAIN_REPLY.startswith(text.strip().upper()):
            continue  # may be the abstain reply: hold it
        yield delta if shown else text
        shown = True
    gen.close()
    if not shown:
        yield from _stream(llm, full)
        return
    yield from llm.stream_continue(full, text)


def _first_sentence_done(text: str) -> bool:
    """Whether `text` ends a statement (not a question) of 4+ words outside any code block."""
    # a question does not end it: it is the page's FAQ heading echoed, and going on from it the
    # model recited the page's answer word for word (56 words, "Why isn't there a switch ...?")
    t = text.rstrip()
    return t.count("```") % 2 == 0 and len(t.split()) >= 4 and ends_complete(t, stops=".!")


def missing_names(question: str, hits: list[Hit]) -> list[str]:
    """Names in the question (see textutil.named_terms) that none of `hits` mentions: a question
    about "PyCharm" is not answered by passages that never name it, however well the rest matches."""
    seen = _passage_terms(hits)
    return [w for w in named_terms(question) if not content_terms(w) <= seen]


def _passage_terms(hits: list[Hit]) -> set[str]:
    """Content words of the passages, their titles and headings included."""
    seen: set[str] = set()
    for h in hits:
        seen |= content_terms(f"{h.title} {h.heading} {h.text}")
    return seen


def evidence_coverage(question: str, hits: list[Hit], idf: dict[str, float] | None = None) -> float:
    """Share of the question's content words found in the given passages (titles included),
    each word weighted by its IDF in the index when `idf` is given, so that a missing rare
    word ("vacuum") counts for more than a missing common one ("table")."""
    q = content_terms(question)
    if not q:
        return 1.0
    seen = _passage_terms(hits)
    if not idf:
        return len(q & seen) / len(q)
    top = max(idf.values(), default=1.0)
    weight = {t: idf.get(t, top) for t in q}
    return sum(weight[t] for t in q & seen) / sum(weight.values())


def _cite_sentence(sentence: str, n: int) -> str:
    """'Text.' -> 'Text [n].'"""
    if sentence[-1:] in ".!?":
        return f"{sentence[:-1]} [{n}]{sentence[-1]}"
    return f"{sentence} [{n}]"


def _header(h: Hit) -> str:
    return h.title if not h.heading else f"{h.title} — {h.heading.split(' > ')[-1]}"


def _citation(n: int, h: Hit) -> Citation:
    return Citation(n=n, url=h.url, title=h.title, heading=h.heading, snippet=h.snippet, chunk_id=h.chunk_id,
                    passage=h.text)


def _sentence_support(claim: str, numbers: tuple[int, ...], status: str, sup: float, passage: str
                      ) -> SentenceSupport:
    """A kept sentence with the span of its first cited passage that supports it."""
    if claim.startswith("```"):  # a quoted code block: its exact place in the passage
        block = claim.strip("`").strip("\n")
        start = passage.find(block) if passage else -1
        start, end = (start, start + len(block)) if start >= 0 else (-1, -1)
    else:
        start, end = support_span(claim, passage) if passage else (-1, -1)
    return SentenceSupport(text=claim, citations=numbers, status=status, support=sup,
                           span=passage[start:end] if start >= 0 else "", span_start=start, span_end=end)


def _interleave(lists: list[list[Hit]]) -> list[Hit]:
    """Round-robin over ranked lists, each chunk once, at its best position."""
    seen: set[int] = set()
    out: list[Hit] = []
    for rank in range(max(map(len, lists), default=0)):
        for hits in lists:
            if rank < len(hits) and hits[rank].chunk_id not in seen:
                seen.add(hits[rank].chunk_id)
                out.append(hits[rank])
    return out


def _distinct_pages(hits: list[Hit]) -> list[Hit]:
    seen, out = set(), []
    for h in hits:
        if h.url not in seen:
            seen.add(h.url)
            out.append(h)
    return out
