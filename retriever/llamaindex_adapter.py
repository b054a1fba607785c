"""The one place retriever/ exposes LlamaIndex types: a BaseRetriever over HybridRetriever."""
from __future__ import annotations

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from retriever.hybrid import Hit, HybridRetriever


def hit_to_node(hit: Hit) -> NodeWithScore:
    node = TextNode(id_=f"chunk-{hit.chunk_id}", text=hit.text,
                    metadata={"url": hit.url, "title": hit.title, "heading": hit.heading,
                              "chunk_id": hit.chunk_id, "snippet": hit.snippet,
                              "bm25_rank": hit.bm25_rank, "dense_rank": hit.dense_rank,
                              "bm25_score": hit.bm25_score, "dense_score": hit.dense_score,
                              "rerank_rank": hit.rerank_rank, "rerank_score": hit.rerank_score})
    return NodeWithScore(node=node, score=hit.score)


def node_to_hit(nws: NodeWithScore) -> Hit:
    m = nws.node.metadata
    return Hit(chunk_id=m["chunk_id"], url=m["url"], title=m["title"], heading=m["heading"],
               text=nws.node.get_content(), snippet=m["snippet"], score=nws.score or 0.0,
               bm25_rank=m.get("bm25_rank"), dense_rank=m.get("dense_rank"),
               bm25_score=m.get("bm25_score"), dense_score=m.get("dense_score"),
               rerank_rank=m.get("rerank_rank"), rerank_score=m.get("rerank_score"))


class FathomRetriever(BaseRetriever):
    """LlamaIndex retriever returning NodeWithScore in the same order as HybridRetriever.search."""

    def __init__(self, retriever: HybridRetriever, k: int = 5, max_per_page: int = 2, rerank: bool | None = None):
        super().__init__()
        self._retriever = retriever
        self._k = k
        self._max_per_page = max_per_page
        self._rerank = rerank

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self._retriever.search(query_bundle.query_str, k=self._k, max_per_page=self._max_per_page,
                                        rerank=self._rerank)
        return [hit_to_node(h) for h in result.hits]
