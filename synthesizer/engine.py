"""Answering: a LlamaIndex query engine over our retriever and a local llama.cpp model,
with fast / slow / auto modes, verified citations, abstention and an extractive fallback."""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import QueryBundle
from pydantic import ConfigDict

from core.errors import ModelUnavailable, QueryError
from retriever.hybrid import Hit, HybridRetriever
from retriever.llamaindex_adapter import FathomRetriever, hit_to_node, node_to_hit
from synthesizer.citations import looks_like_abstention, shown_support, support_span, verify
from synthesizer.config import AnswerConfig
from synthesizer.llm import LlamaCppLLM
from synthesizer.prompts import ABSTAIN_TEXT, build_messages, focus
from synthesizer.textutil import content_terms, split_sentences
from synthesizer.types import Answer, Citation, SentenceSupport

_COMPLEX = re.compile(r"\b(why|explain|compare|difference|differences|versus|vs\.?|pros|cons|"
                      r"trade-?offs?|how does|how do .* work|when should|best way|steps)\b", re.I)

LLMFactory = Callable[[str, int, int], LlamaCppLLM]


def default_llm_factory(config: AnswerConfig) -> LLMFactory:
    def make(model: str, n_ctx: int, max_tokens: int) -> LlamaCppLLM:
        return LlamaCppLLM(model_name=model, n_ctx=n_ctx, n_threads=config.n_threads, max_tokens=max_tokens,
                           adaptive_threads=config.adaptive_threads)
    return make


class Synthesizer:
    """Answers questions from a HybridRetriever. LLMs are created on first use and kept."""

    def __init__(self, retriever: HybridRetriever, config: AnswerConfig = AnswerConfig(),
                 llm_factory: LLMFactory | None = None):
        self.retriever = retriever
        self.config = config
        self.llm_factory = llm_factory or default_llm_factory(config)
        self._llms: dict[tuple[str, int, int], LlamaCppLLM] = {}

    # --- pieces -----------------------------------------------------------------
    def llm(self, mode: str) -> LlamaCppLLM:
        c = self.config
        key = ((c.fast_model, c.fast_n_ctx, c.fast_max_tokens) if mode == "fast"
               else (c.slow_model, c.slow_n_ctx, c.slow_max_tokens))
        if key not in self._llms:
            self._llms[key] = self.llm_factory(*key)
        return self._llms[key]

    def idf(self) -> dict[str, float]:
        """IDF of content terms over the index's chunks (computed once per loaded index)."""
        index = self.retriever.index
        if getattr(self, "_idf_for", None) is not index:
            df: dict[str, int] = {}
            for chunk in index.chunks.values():
                for t in content_terms(f"{chunk.title} {chunk.heading} {chunk.text}"):
                    df[t] = df.get(t, 0) + 1
            n = max(1, len(index.chunks))
            self._idf = {t: math.log((n + 1) / (d + 0.5)) for t, d in df.items()}
            self._idf_for = index
        return self._idf

    def li_retriever(self, k: int, rerank: bool | None = None) -> FathomRetriever:
        # Up to 3 chunks of one page: a long FAQ answer spans several chunks.
        return FathomRetriever(self.retriever, k=k, max_per_page=3, rerank=rerank)

    def choose_mode(self, question: str, hits: list[Hit]) -> tuple[str, str]:
        """auto mode: fast when retrieval is confident and the question simple, else slow."""
        words = len(question.split())
        top = hits[0] if hits else None
        agree = bool(top and top.bm25_rank and top.dense_rank and top.bm25_rank <= 3 and top.dense_rank <= 3)
        coverage = evidence_coverage(question, hits[:3], self.idf())
        complex_q = bool(_COMPLEX.search(question)) or words > 20
        signals = (f"engines {'agree' if agree else 'disagree'} on the top passage, "
                   f"{coverage:.0%} of key terms found, {'complex' if complex_q else 'simple'} question "
                   f"({words} words)")
        if agree and coverage >= 0.75 and not complex_q:
            return "fast", f"auto chose fast: {signals}"
        return "slow", f"auto chose slow: {signals}"

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
        c = self.config
        t0 = time.perf_counter()
        mode = mode or c.mode
        if mode not in ("fast", "slow", "auto"):
            raise QueryError(f"unknown mode {mode!r}; use fast, slow or auto")
        question = (question or "").strip()
        if not question:
            raise QueryError("the question is empty")
        notes: list[str] = []
        if len(question) > c.max_question_chars:
            notes.append(f"question truncated from {len(question)} to {c.max_question_chars} characters")
            question = question[:c.max_question_chars]
        k = max(c.fast_passages, c.slow_passages)
        # slow mode asked for up front reranks in its one retrieval; auto retrieves unreranked to
        # choose, and reranks again only when it chooses slow
        rerank_now = mode == "slow" and c.slow_rerank
        nodes = self.li_retriever(k, rerank=True if rerank_now else None).retrieve(QueryBundle(question))
        hits = [node_to_hit(n) for n in nodes]
        timings = {"retrieve_ms": round((time.perf_counter() - t0) * 1000, 1)}
        if mode == "auto":
            mode, reason = self.choose_mode(question, hits)
            because = reason + "; abstained: "  # an abstention still says which mode auto chose
        else:
            reason, because = f"{mode} mode requested", ""
        if mode == "slow" and c.slow_rerank and hits and not rerank_now:
            t = time.perf_counter()
            hits = [node_to_hit(n) for n in self.li_retriever(c.slow_passages, rerank=True).retrieve(QueryBundle(question))]
            timings["rerank_ms"] = round((time.perf_counter() - t) * 1000, 1)
        if not hits:
            yield self._abstain(because + "no indexed passage matches the question", mode, hits, timings, t0, notes)
            return
        coverage = evidence_coverage(question, hits[:3], self.idf())
        if coverage < c.min_evidence:
            yield self._abstain(because + f"weak evidence: only {coverage:.0%} of the question's key terms appear "
                                "in the best sources", mode, hits, timings, t0, notes)
            return
        passages = hits[:c.fast_passages if mode == "fast" else c.slow_passages]
        t_load = time.perf_counter()
        try:
            llm = self.llm(mode)
        except ModelUnavailable as exc:
            notes.append(f"LLM unavailable ({exc}); extractive answer")
            yield self._extractive(question, passages, reason, timings, t0, notes)
            return
        if time.perf_counter() - t_load > 0.05:  # first use in this process: the model was loaded
            timings["model_load_ms"] = round((time.perf_counter() - t_load) * 1000, 1)
        max_tokens = c.fast_max_tokens if mode == "fast" else c.slow_max_tokens
        n_ctx = c.fast_n_ctx if mode == "fast" else c.slow_n_ctx
        q_terms = content_terms(question)
        texts = [f"{_header(h)}: " + (focus(h.text, q_terms, c.fast_passage_words) if mode == "fast" else h.text)
                 for h in passages]
        # The small fast model answers "NOT IN SOURCES" far too eagerly when offered it, so fast
        # mode leaves abstention to the evidence gate before and the verifier after generation.
        messages, used = build_messages(question, texts, llm.count_tokens, n_ctx - max_tokens,
                                        allow_abstain=mode != "fast", inline_citations=mode != "fast")
        passages = passages[:used]
        # a model's one-time load does not eat into the mode's budget
        deadline = (t0 + timings.get("model_load_ms", 0.0) / 1000
                    + (c.fast_deadline_s if mode == "fast" else c.slow_deadline_s))
        text, first_token, n_tokens = "", None, 0
        t_gen = time.perf_counter()
        try:
            for delta in _stream(llm, messages):
                if first_token is None:
                    first_token = time.perf_counter()
                text += delta
                n_tokens += 1
                yield delta
                if time.perf_counter() > deadline:
                    notes.append("generation stopped at the mode's deadline")
                    break
        except (RuntimeError, ValueError, OSError) as exc:  # llama.cpp failures
            notes.append(f"LLM failed ({exc}); extractive answer")
            yield self._extractive(question, passages, reason, timings, t0, notes)
            return
        t_end = time.perf_counter()
        gen_s = t_end - t_gen
        if first_token is not None and n_tokens > 1 and t_end > first_token:
            timings["decode_tokens_per_s"] = round((n_tokens - 1) / (t_end - first_token), 1)
        timings.update(first_token_ms=round(((first_token or time.perf_counter()) - t0) * 1000, 1),
                       generate_ms=round(gen_s * 1000, 1), tokens=n_tokens, threads=llm.threads_used,
                       tokens_per_s=round(n_tokens / gen_s, 1) if gen_s > 0 else 0.0)
        if not text.strip() and "generation stopped at the mode's deadline" in notes:
            yield self._extractive(question, passages, reason, timings, t0, notes)
            return
        if looks_like_abstention(text):
            yield self._abstain(because + "the model found no answer in the sources", mode, hits, timings, t0, notes,
                                model=llm.model_name)
            return
        checked = verify(text, [f"{h.title} {h.heading} {h.text}" for h in passages], c.min_support,
                         drop_unsupported=True)
        if checked.dropped:
            notes.append(f"{checked.dropped} unsupported sentence(s) removed")
        if checked.invalid_markers:
            notes.append(f"{checked.invalid_markers} citation marker(s) to no source removed")
        if not checked.kept or not checked.cited:
            yield self._abstain(because + "no sentence of the draft answer was supported by the sources", mode, hits,
                                timings, t0, notes, model=llm.model_name)
            return
        cites = tuple(_citation(i + 1, passages[n]) for i, n in enumerate(checked.cited))
        shown_ok, shown = shown_support(checked.text, [f"{passages[n].title} {passages[n].heading} {passages[n].text}"
                                                        for n in checked.cited], c.min_support)
        # model_citations_*: markers the model wrote itself (fast mode asks for none);
        # citations_*: every marker shown in the final answer, re-checked against its passage
        timings.update(model_citations_supported=checked.supported_citations,
                       model_citations_total=checked.total_citations,
                       citations_supported=shown_ok, citations_total=shown)
        timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        number = {n: i + 1 for i, n in enumerate(checked.cited)}
        sentences = tuple(_sentence_support(claim, tuple(number[n] for n in refs), status, sup,
                                            passages[refs[0]].text if refs else "")
                          for claim, refs, status, sup in checked.sentences)
        yield Answer(answer=checked.text, mode=mode, reason=reason, abstained=False, citations=cites,
                     timings=timings, model=llm.model_name, notes=tuple(notes), sentences=sentences)

    def _abstain(self, why: str, mode: str, hits: list[Hit], timings: dict, t0: float, notes: list[str],
                 model: str = "") -> Answer:
        timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        closest = tuple(_citation(i + 1, h) for i, h in enumerate(_distinct_pages(hits)[:3]))
        text = ABSTAIN_TEXT + (" The closest sources are listed below." if closest else "")
        return Answer(answer=text, mode=mode, reason=why, abstained=True, citations=closest,
                      timings=timings, model=model, notes=tuple(notes))

    def _extractive(self, question: str, passages: list[Hit], reason: str, timings: dict, t0: float,
                    notes: list[str]) -> Answer:
        """Best-matching sentences of the top passages, each cited."""
        q = content_terms(question)
        scored = []
        for i, h in enumerate(passages):
            for j, s in enumerate(split_sentences(h.text.replace("```", ""))):
                terms = content_terms(s)
                if len(s) < 20 or not terms:
                    continue
                scored.append((len(q & terms) / max(1, len(q)) - 0.01 * i - 0.001 * j, i, s))
        scored.sort(reverse=True)
        chosen = [(i, s) for score, i, s in scored[:3] if score > 0]
        if not chosen:
            return self._abstain("no sentence of the sources matches the question", "extractive", passages,
                                 timings, t0, notes)
        order: list[int] = []
        for i, _ in chosen:
            if i not in order:
                order.append(i)
        number = {i: n + 1 for n, i in enumerate(order)}
        text = " ".join(_cite_sentence(" ".join(s.split()), number[i]) for i, s in chosen)
        sentences = tuple(_sentence_support(" ".join(s.split()), (number[i],), "supported", 1.0, passages[i].text)
                          for i, s in chosen)
        timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return Answer(answer=text, mode="extractive", reason=reason, abstained=False,
                      citations=tuple(_citation(number[i], passages[i]) for i in order),
                      timings=timings, notes=tuple(notes), sentences=sentences)

    def query_engine(self, mode: str | None = None) -> "FathomQueryEngine":
        """This synthesizer as a LlamaIndex query engine."""
        return FathomQueryEngine(synthesizer=self, mode=mode or self.config.mode)


class FathomQueryEngine(CustomQueryEngine):
    """LlamaIndex query engine: `query(q)` returns a Response whose metadata holds the Answer
    and whose source_nodes are the cited passages."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    synthesizer: Synthesizer
    mode: str = "auto"

    def custom_query(self, query_str: str) -> Response:
        ans = self.synthesizer.answer(query_str, self.mode)
        sources = [hit_to_node(Hit(chunk_id=c.chunk_id, url=c.url, title=c.title, heading=c.heading, text="",
                                   snippet=c.snippet, score=0.0)) for c in ans.citations]
        return Response(response=ans.answer, source_nodes=sources, metadata={"answer": ans})


def _stream(llm: LlamaCppLLM, messages: list[dict]) -> Iterator[str]:
    msgs = [ChatMessage(role=MessageRole(m["role"]), content=m["content"]) for m in messages]
    for resp in llm.stream_chat(msgs):
        if resp.delta:
            yield resp.delta


def evidence_coverage(question: str, hits: list[Hit], idf: dict[str, float] | None = None) -> float:
    """Share of the question's content words found in the given passages (titles included),
    each word weighted by its IDF in the index when `idf` is given, so that a missing rare
    word ("vacuum") counts for more than a missing common one ("table")."""
    q = content_terms(question)
    if not q:
        return 1.0
    seen: set[str] = set()
    for h in hits:
        seen |= content_terms(f"{h.title} {h.heading} {h.text}")
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
    start, end = support_span(claim, passage) if passage else (-1, -1)
    return SentenceSupport(text=claim, citations=numbers, status=status, support=sup,
                           span=passage[start:end] if start >= 0 else "", span_start=start, span_end=end)


def _distinct_pages(hits: list[Hit]) -> list[Hit]:
    seen, out = set(), []
    for h in hits:
        if h.url not in seen:
            seen.add(h.url)
            out.append(h)
    return out
