"""The Python API: public types from `fathom`, typed status, context manager, threads, and
Fathom's LlamaIndex query engine and retriever composed with ordinary LlamaIndex parts."""
from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

TINY = dict(fast_model="smollm2-135m", slow_model="smollm2-135m", fast_max_tokens=40, slow_max_tokens=40)


@pytest.fixture(scope="module")
def tiny(built_engine, embedder):
    from fathom import AnswerConfig, Engine

    config = dataclasses.replace(built_engine.config, answer=AnswerConfig(**TINY))
    return Engine(built_engine.data_dir, config=config, embedder=embedder)


def test_every_public_type_and_the_whole_exception_tree_come_from_fathom():
    import core.errors
    import fathom

    for name in ("Engine", "Filters", "Hit", "SearchResult", "Answer", "Citation", "SentenceSupport", "Status",
                 "CrawlReport", "IndexReport", "EvalResult", "Config", "load_config", "run_jobs"):
        assert hasattr(fathom, name), name
    errors = {n for n, c in inspect.getmembers(core.errors, inspect.isclass)
              if issubclass(c, core.errors.FathomError)}
    assert errors <= set(fathom.__all__), errors - set(fathom.__all__)
    assert all(getattr(fathom, n) is getattr(core.errors, n) for n in errors)


def test_status_is_a_typed_frozen_dataclass(built_engine):
    from fathom import IndexStatus, Status

    st = built_engine.status()
    assert isinstance(st, Status) and isinstance(st.index, IndexStatus)
    assert st.index.chunks > 0 and st.index.size_bytes > 0 and st.index.settings["hnsw_m"] > 0
    assert st.crawl.pages >= 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.index = None  # type: ignore[misc]
    assert st.to_dict()["index"]["chunks"] == st.index.chunks


def test_status_of_an_empty_data_dir(tmp_path):
    from fathom import Engine

    st = Engine(str(tmp_path)).status()
    assert st.crawl is None and st.index is None


def test_engine_is_a_context_manager(built_engine, embedder):
    from fathom import Engine

    with Engine(built_engine.data_dir, embedder=embedder) as engine:
        assert engine.search("compost").hits
        assert engine._index is not None
    assert engine._index is None  # released; a later call reloads
    assert engine.search("compost").hits


def test_as_retriever_plugs_into_a_retriever_query_engine_with_a_real_llm(tiny):
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import NodeWithScore

    from synthesizer.llm import LlamaCppLLM

    retriever = tiny.as_retriever(k=3)
    nodes = retriever.retrieve("how to prune tomato suckers")
    assert nodes and isinstance(nodes[0], NodeWithScore)
    assert nodes[0].node.metadata["url"].endswith("/docs/tomatoes.html")
    llm = LlamaCppLLM(model_name="smollm2-135m", n_ctx=2048, max_tokens=24, adaptive_threads=False)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    response = engine.query("How do I prune tomatoes?")
    assert str(response).strip()
    assert response.source_nodes[0].node.metadata["url"].endswith("/docs/tomatoes.html")


def test_query_engine_tool_answers_through_fathom(tiny):
    from llama_index.core.tools import QueryEngineTool

    from fathom import Answer

    tool = QueryEngineTool.from_defaults(tiny.as_query_engine(mode="fast"), name="garden_docs",
                                         description="Answers questions about the garden handbook.")
    out = tool.call("How often should the compost heap be turned?")
    answer = out.raw_output.metadata["answer"]
    assert isinstance(answer, Answer) and answer.mode in ("fast", "extractive")
    assert out.content == answer.answer
    if not answer.abstained:
        assert any(c.url.endswith("/docs/compost.html") for c in answer.citations)
        assert re.search(r"\[\d\]", answer.answer)
