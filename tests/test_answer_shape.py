"""Answers a person wants to read: whole quoted code or none, no markers in code, no trailing
fragment, one number per page section, copy length; and the LlamaIndex query engine as the
answer path (Engine.ask), with any LlamaIndex LLM."""
import dataclasses
import json
from typing import Any

import pytest

from fathom.cli import answer_dict
from fathom.engine import Engine
from retriever.hybrid import Hit
from synthesizer.citations import verify
from synthesizer.config import AnswerConfig
from synthesizer.engine import FathomQueryEngine, merge_sections
from synthesizer.shaping import broken_code, longest_copied_run, quote_code, segments
from synthesizer.textutil import content_terms
from synthesizer.types import Answer, Timings

SOURCE = ("Default values are created exactly once, when the function is defined. If that object is "
          "changed, like a dictionary here, subsequent calls see the changed object.\n\n"
          "```\ndef foo(mydict={}):  # Danger: shared reference to one dict for all calls\n"
          "    ... compute something ...\n    mydict[key] = value\n    return mydict\n```\n\n"
          "The first time you call this function, mydict contains a single item.")
OTHER = "Classes are defined with the class statement. Methods take self as their first argument."
TINY = AnswerConfig(fast_model="smollm2-135m", slow_model="smollm2-135m", fast_max_tokens=48,
                    slow_max_tokens=48, fast_n_ctx=1024, slow_n_ctx=1024)


def _hit(cid: int, url: str, heading: str, text: str) -> Hit:
    return Hit(chunk_id=cid, url=url, title="T", heading=heading, text=text, snippet="", score=1.0)


def test_partial_code_is_replaced_by_the_whole_source_block_and_cited_outside_it():
    draft = ("Defaults are created once, when the function is defined [2]. For example:\n"
             "```python\ndef foo(mydict={}): [2]\n    mydict[key] = value\n``` [2] The first time you call "
             "this function, mydict contains a single item [2].")
    checked = verify(draft, [OTHER, SOURCE], 0.5)
    block = SOURCE[SOURCE.index("def foo"):SOURCE.index("return mydict") + len("return mydict")]
    assert f"```\n{block}\n```" in checked.text  # whole, exactly as in the source
    assert checked.code_quoted == 1 and checked.cited == (1,)
    for seg in segments(checked.text):
        if seg.code:
            assert "[" not in seg.text.replace("mydict[key]", "")  # no marker inside the code
    assert "For example [1]:" in checked.text  # the code's source is cited by its lead-in
    assert not broken_code(checked.text)


def test_a_quoted_block_keeps_its_indentation_after_blank_lines():
    # seen in the seventh session's eval: "\n\n    def __init__" lost its indent in the answer
    block = ("class linear:\n\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n\n"
             "    def __call__(self, x):\n        return self.a * x + self.b")
    source = f"Or using a callable object:\n\n```\n{block}\n```\n\nIn both cases taxes is callable."
    draft = ("A callable object works too [1]. Using a callable object [1]:\n\n```\nclass linear:\n\n"
             "def __init__(self, a, b):\n        self.a, self.b = a, b\n```\n\nIn both cases it is callable [1].")
    checked = verify(draft, [source], 0.5)
    assert f"```\n{block}\n```" in checked.text
    assert checked.text.endswith("callable [1].") and "  In both" not in checked.text


def test_invented_code_is_dropped_with_its_lead_in():
    draft = ("Defaults are created once, when the function is defined [1]. For example, write:\n"
             "```\nimport antigravity\nfly(speed=9000)\n```")
    checked = verify(draft, [SOURCE], 0.5)
    assert "```" not in checked.text and "antigravity" not in checked.text
    assert checked.code_dropped == 1 and checked.dropped + checked.fragments_dropped == 1
    assert checked.text == "Defaults are created once, when the function is defined [1]."


def test_unclosed_fence_and_trailing_fragment_never_reach_the_answer():
    # the shape of the demo's broken answer: an inline fence the model never closed, a fragment
    draft = ("Default values are created once, when the function is defined [1]. For example, "
             "don't write [2]: ``` def foo(mydict={}): .. [1].")
    checked = verify(draft, [SOURCE, SOURCE], 0.5)
    assert not broken_code(checked.text)
    assert checked.text.endswith(".") and "don't write" not in checked.text
    cut = verify("Default values are created once [1]. Subsequent calls see the changed", [SOURCE], 0.5)
    assert cut.text == "Default values are created once [1]." and cut.fragments_dropped == 1


def test_broken_code_detects_what_a_reader_would_see_as_broken():
    assert broken_code("Use this [1]:\n\n```\nx = 1\n")  # unclosed
    assert broken_code("Use this:\n\n```\nx = 1 [1]\n```")  # marker inside code
    assert broken_code("It is created once [1]. For example, don't")  # fragment
    assert not broken_code("It is created once [1]. For example [1]:\n\n```\nx = 1\n```")
    assert not broken_code("It is created once [1].")
    # given the cited sources, code must stand in one letter for letter; a "[10]" of the source's own is no marker
    src = "A list is shared:\n\n```\n>>> y = x\n>>> y.append(10)\n>>> x\n[10]\n```\n"
    shared = "Both names refer to one list [1]. For example [1]:\n\n```\n>>> y = x\n>>> y.append(10)\n>>> x\n[10]\n```"
    assert not broken_code(shared, [src]) and broken_code(shared)
    assert broken_code(shared.replace("append(10)", "append( 10 )"), [src])  # not as in the source


def test_quote_code_needs_real_overlap_with_a_source_block():
    assert quote_code("def foo(mydict={}):\n    mydict[key] = value", [OTHER, SOURCE])[0] == 1
    assert quote_code("def bar():\n    return 2", [SOURCE]) is None
    assert quote_code("x", [SOURCE]) is None


def test_copy_length_is_the_longest_verbatim_word_run_outside_code():
    answer = ("Defaults are made once. If that object is changed, like a dictionary here, subsequent calls "
              "see it [1].\n\n```\ndef foo(mydict={}):  # Danger: shared reference to one dict for all calls\n```")
    # "if that object is changed like a dictionary here subsequent calls see" = 12 words;
    # the longer run inside the code block is not counted
    assert longest_copied_run(answer, [SOURCE]) == 12
    assert longest_copied_run("Nothing in common at all.", [SOURCE]) <= 1


def test_one_number_per_page_section():
    a = _hit(7, "http://x/faq.html", "Why are defaults shared?",
             "Default values are created exactly once, when the function is defined. If that object "
             "is changed, like a dictionary here, subsequent calls see the changed object.")
    # the next chunk of the same section repeats the tail of the previous one (chunk overlap)
    b = _hit(8, "http://x/faq.html", "Why are defaults shared?",
             "If that object is changed, like a dictionary here, subsequent calls see the changed object. "
             "The first time you call this function, mydict contains a single item.")
    c = _hit(9, "http://x/faq.html", "How do I copy an object?", "Use copy.copy() for a shallow copy.")
    merged = merge_sections([b, c, a])
    assert [h.chunk_id for h in merged] == [8, 9]  # at the best-ranked member's place
    text = merged[0].text
    assert text.startswith("Default values") and text.endswith("single item.")
    assert text.count("subsequent calls see the changed object") == 1
    checked = verify("Defaults are created once when defined [1]. Later calls see the changed object [1]. "
                     "The first call's dict holds a single item [1].",
                     [f"{h.title} {h.heading} {h.text}" for h in merged], 0.5)
    assert checked.cited == (0,)


def test_timings_read_like_a_dict_and_serialise():
    t = Timings(retrieve_ms=3.5, total_ms=10.0, tokens=4)
    assert t["total_ms"] == 10.0 and t.get("rerank_ms", 0) == 0 and "rerank_ms" not in t
    assert dict(t) == {"retrieve_ms": 3.5, "tokens": 4, "total_ms": 10.0}
    with pytest.raises(KeyError):
        t["nonsense"]
    ans = Answer(answer="x", mode="fast", reason="r", abstained=True, timings=t)
    assert json.loads(json.dumps(answer_dict(ans)))["timings"]["total_ms"] == 10.0
    assert dataclasses.asdict(t)["total_ms"] == 10.0


@pytest.fixture()
def engine(built_engine):
    cfg = dataclasses.replace(built_engine.config, answer=TINY)
    return Engine(built_engine.data_dir, cfg, embedder=built_engine.embedder)


def test_engine_ask_runs_through_the_llamaindex_query_engine(engine, monkeypatch):
    seen = []
    original = FathomQueryEngine.custom_query

    def spy(self, query_str):
        seen.append(query_str)
        return original(self, query_str)

    monkeypatch.setattr(FathomQueryEngine, "custom_query", spy)
    ans = engine.ask("How often should the compost heap be turned?", mode="fast")
    assert seen == ["How often should the compost heap be turned?"]
    assert isinstance(ans, Answer)
    resp = engine.synthesizer().query_engine("fast").query("How often should the compost heap be turned?")
    meta = resp.metadata
    assert meta["answer"].answer == resp.response and meta["mode"] == "fast"
    assert meta["timings"]["total_ms"] > 0 and "retrieve_ms" in meta["timings"]
    if not meta["abstained"]:
        assert meta["sentences"] and meta["sentences"][0]["citations"]
        assert [n.node.metadata["url"] for n in resp.source_nodes] == [c.url for c in meta["answer"].citations]
        assert all(n.node.get_content() for n in resp.source_nodes)  # the cited passage text


def test_auto_choosing_slow_reranks_the_hits_it_has_without_searching_again(engine, monkeypatch):
    retriever = engine.synthesizer().retriever
    calls = []
    original = type(retriever).search

    def counting(self, *a, **kw):
        calls.append(kw.get("rerank"))
        return original(self, *a, **kw)

    monkeypatch.setattr(type(retriever), "search", counting)
    ans = engine.ask("Why should vegetables be watered early in the morning?", mode="auto")
    assert ans.reason.startswith("auto chose slow")
    assert len(calls) == 1 and not calls[0]  # one unreranked search; the rerank reused its hits
    assert "rerank_ms" in ans.timings


def test_idf_comes_from_the_index_read_api(engine):
    index = engine.open_index()
    term = "compost"
    counted = sum(1 for c in index.chunks.values() if term in content_terms(f"{c.title} {c.heading} {c.text}"))
    assert 0 < index.document_frequency(term) <= counted
    assert index.document_frequency("zzzunknownzzz") == 0
    some = next(iter(index.chunks))
    assert index.chunk(some) is index.chunks[some] and index.chunk(-1) is None
    idf = engine.synthesizer().idf({"compost", "zzzunknownzzz"})
    assert idf["zzzunknownzzz"] > idf["compost"] > 0


def test_any_llamaindex_llm_can_answer(built_engine):
    """A user's own LlamaIndex LLM (here a plain CustomLLM over llama.cpp, not LlamaCppLLM)."""
    from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
    from llama_index.core.llms.custom import CustomLLM

    from synthesizer.llm import load_llama

    class PlainLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=1024, num_output=48, model_name="my-own-model")

        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            out = load_llama("smollm2-135m", 1024, 1).create_completion(prompt, max_tokens=48, temperature=0)
            return CompletionResponse(text=out["choices"][0]["text"])

        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponseGen:
            def gen():
                text = ""
                for part in load_llama("smollm2-135m", 1024, 1).create_completion(
                        prompt, max_tokens=48, temperature=0, stream=True):
                    text += part["choices"][0]["text"]
                    yield CompletionResponse(text=text, delta=part["choices"][0]["text"])
            return gen()

    # one thread and a long deadline: two llama.cpp threads stall on a loaded 2-core machine
    cfg = dataclasses.replace(built_engine.config, answer=dataclasses.replace(TINY, fast_deadline_s=300.0))
    eng = Engine(built_engine.data_dir, cfg, embedder=built_engine.embedder,
                 llm_factory=lambda model, n_ctx, max_tokens: PlainLLM())
    ans = eng.ask("How often should the compost heap be turned?", mode="fast")
    assert ans.mode == "fast", ans.notes
    assert ans.model == "my-own-model" or ans.abstained
    assert ans.timings["tokens"] > 0


def test_a_looping_draft_keeps_each_statement_once():
    from synthesizer.engine import _looping

    draft = ("Default values are created once, when the function is defined [1]. Later calls see the "
             "changed object [1]. Default values are created exactly once, when the function is defined [1]. "
             "Later calls see the changed object [1].")
    checked = verify(draft, [SOURCE], 0.5)
    assert checked.text == ("Default values are created once, when the function is defined [1]. "
                            "Later calls see the changed object [1].")
    assert checked.repeats_dropped == 2
    assert _looping(draft) and not _looping("Default values are created once [1]. Later calls see it [1].")


def test_echoed_prompt_framing_is_removed():
    checked = verify("The direct answer is that default values are created once [1]. "
                     "The answer depends on when the function is defined [1].", [SOURCE], 0.5)
    assert checked.text.startswith("Default values are created once [1].")
    assert "The answer depends on when the function is defined [1]." in checked.text


def test_echoed_prompt_labels_and_copied_questions_are_removed():
    """Seen on the whole Python docs: 'One sentence answer: ...', 'Reason in two sentences: ...'
    and an answer opening with the page's FAQ heading, copied."""
    draft = ("Why are default values shared between objects [1]? One sentence answer: default values "
             "are created exactly once [1]. Reason in two sentences: the function is defined once, "
             "so later calls see the changed object [1]. Answer: yes [1].")
    checked = verify(draft, [SOURCE], 0.5)
    assert checked.text.startswith("Default values are created exactly once [1]. The function is defined once")
    assert "?" not in checked.text and "answer:" not in checked.text.lower()
    assert "reason" not in checked.text.lower()
    assert checked.questions_dropped == 1
    # "The reason:" is a label too; prose that merely starts with a similar word is left alone
    kept = verify("The reason: defaults are created exactly once [1].", [SOURCE], 0.5)
    assert kept.text == "Defaults are created exactly once [1]."
    plain = verify("Reasonable defaults are created exactly once [1].", [SOURCE], 0.5)
    assert plain.text == "Reasonable defaults are created exactly once [1]."


def test_copy_penalty_shortens_verbatim_runs():
    """SmolLM2 asked to repeat a passage copies it; with the NoCopy processor it cannot keep
    copying for long (outside code)."""
    from llama_cpp import LogitsProcessorList

    from synthesizer.llm import NoCopy, load_llama

    llama = load_llama("smollm2-135m", 1024, 1)
    passage = ("Default values are created exactly once, when the function is defined. If that object is "
               "changed, like a dictionary here, subsequent calls to the function will refer to this changed "
               "object.")
    messages = [{"role": "user", "content": f"Repeat this text exactly:\n{passage}"}]

    def run(processor):
        out = llama.create_chat_completion(messages, max_tokens=48, temperature=0.0,
                                           logits_processor=processor)
        return out["choices"][0]["message"]["content"]

    plain = longest_copied_run(run(None), [passage])
    guarded = longest_copied_run(run(LogitsProcessorList([NoCopy(llama, 100.0, n=4)])), [passage])
    assert guarded < plain and guarded <= 8


def test_copy_penalty_grows_while_a_copy_runs_and_fades_after_it():
    import numpy as np

    from synthesizer.llm import NoCopy, load_llama

    llama = load_llama("smollm2-135m", 1024, 1)
    prompt = list(llama.tokenize(b"one two three four five six seven eight nine ten eleven twelve "
                                 b"thirteen fourteen fifteen sixteen seventeen eighteen", add_bos=False))
    proc = NoCopy(llama, 2.0, n=3, max_scale=3.0)
    vocab = llama.n_vocab()

    def step(ids: list[int]) -> np.ndarray:
        return proc(np.array(ids), np.zeros(vocab, dtype=np.float32))

    pushes = []
    made: list[int] = []
    for _ in range(len(prompt)):
        nxt = prompt[len(made)]  # keep copying the prompt
        pushes.append(-float(step(prompt + made)[nxt]))
        made.append(nxt)
    copying = [p for p in pushes if p > 0]
    assert copying[0] == 2.0 and copying == sorted(copying) and copying[-1] == 6.0  # 2 x up to 3x
    peak = proc.streak
    # a citation marker is no word of its own: the copy goes on through it...
    # (one call per sampled token, as in generation)
    ids = prompt + made
    step(ids)  # the call that sees the copy's last word
    for token in llama.tokenize(b" [1]", add_bos=False):
        ids.append(token)
        step(ids)
    assert proc.streak == peak
    # ...a word of its own only dents it...
    ids.append(llama.tokenize(b" zebra", add_bos=False)[0])
    step(ids)
    assert 0 < proc.streak < peak
    # ...and a stretch of its own words ends it
    for token in llama.tokenize(b" zebra violin harbour cactus" * 6, add_bos=False):
        ids.append(token)
        step(ids)
    assert proc.streak == 0


def test_no_copy_sees_a_copy_through_line_breaks_markup_and_markers():
    """The model re-breaking a page's lines, adding backticks or a marker, or changing case still
    copies it word for word (the 56-word answer of the ninth session): the next word is pushed."""
    import numpy as np

    from synthesizer.llm import NoCopy, load_llama

    llama = load_llama("smollm2-135m", 1024, 1)
    prompt = list(llama.tokenize(b"You can do this easily enough with a sequence of\nif... elif... else.\n"
                                 b"For literal values, or constants within a namespace, you can use a match",
                                 add_bos=False))
    vocab = llama.n_vocab()
    reply = "You can do this easily enough with a sequence of `if... elif... else` [1]. for literal values, or"

    def pushed(written: str, word: str) -> float:
        made = list(llama.tokenize(written.encode(), add_bos=False))
        proc = NoCopy(llama, 2.0, n=4, written=len(made))  # as if the model had written `written`
        scores = proc(np.array(prompt + made), np.zeros(vocab, dtype=np.float32))
        return -float(scores[llama.tokenize(word.encode(), add_bos=False)[0]])

    assert pushed(reply, " constants") > 0  # the copy ran on through "`", "[1]." and the line break
    assert pushed(reply, " c") > 0  # nor can the word be spelt in smaller pieces
    assert pushed("I would use a sequence of `if... elif... else`.", " For") > 0  # "For" after "\n" in the prompt
    assert pushed("I would write it with a few tests in a row.", " For") == 0  # own words: nothing pushed


def test_echoed_instruction_words_are_removed():
    from synthesizer.citations import _unframe

    out = _unframe('To get the source, start with a one-sentence answer: download it from python.org.')
    assert "one-sentence" not in out and out.startswith("To get the source") and out.endswith("python.org.")
    # the instructions' "Paraphrase" echoed as a label (two auto answers, tenth session)
    assert _unframe("Paraphrase: list.sort() sorts the list in place.") == "List.sort() sorts the list in place."
    assert _unframe("Paraphrased code is still code.") == "Paraphrased code is still code."


def test_a_pointer_to_a_code_example_not_shown_is_taken_off():
    passages = ["Default values are evaluated only once, when the function is defined. Mutable defaults "
                "are therefore shared between calls.\n```\ndef foo(mydict={}):\n    ...\n```"]
    draft = ("Default values are evaluated only once, when the function is defined, as demonstrated in the "
             "code example [1]. This is illustrated by the example in source [1].")
    checked = verify(draft, passages, 0.5)
    assert checked.text == "Default values are evaluated only once, when the function is defined [1]."
    assert checked.pointers_dropped >= 1  # the clause (the bare pointer sentence may go as unsupported first)
    from synthesizer.shaping import unpoint
    assert unpoint("This is illustrated by the example in source.") is None
    assert unpoint("Lists are mutable, as shown in the following code snippet below.") == "Lists are mutable."
    assert unpoint("The example shows that lists are mutable.") == "The example shows that lists are mutable."
    # with the example shown, the pointer points at something and stays
    shown = verify(draft.replace(" This is illustrated", " For example:\n```\ndef foo(mydict={}):\n    ...\n```\n"
                                 "This is illustrated"), passages, 0.5)
    assert "as demonstrated in the code example" in shown.text and "```" in shown.text
    assert shown.pointers_dropped == 0


def test_no_copy_reads_a_continued_reply_as_written_not_as_prompt():
    """Going on from a reply's first sentence (the quick start), that sentence is the model's own
    text: a copy running through it is pushed at once, and the sentence is no source to copy from."""
    import numpy as np

    from synthesizer.llm import NoCopy, load_llama

    llama = load_llama("smollm2-135m", 1024, 1)
    source = list(llama.tokenize(b"one two three four five six seven eight nine ten eleven twelve", add_bos=False))
    copied = source[:6]  # the first sentence copied the source's first six tokens
    vocab = llama.n_vocab()

    def push(proc, written_ids):
        return -float(proc(np.array(source + written_ids), np.zeros(vocab, dtype=np.float32))[source[6]])

    # read as written, the copy is already 6 tokens long: the next source token is pushed down
    assert push(NoCopy(llama, 2.0, n=3, written=len(copied)), copied) > 0
    # read as prompt (as before), the copy starts from nothing and nothing is pushed yet
    assert push(NoCopy(llama, 2.0, n=3), copied) == 0
