"""The lexical side: a tantivy BM25 index over chunks (English stemming)."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import tantivy

from crawler.errors import IndexCorrupt
from indexer.chunking import Chunk

SCHEMA_VERSION = 1
TEXT_FIELDS = ("title", "heading", "body")
FIELD_BOOSTS = {"title": 2.0, "heading": 1.5, "body": 1.0}
MAX_QUERY_TERMS = 64
_TERM = re.compile(r"\w+", re.UNICODE)


def schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_integer_field("chunk_id", stored=True, indexed=True, fast=True)
    b.add_text_field("url", stored=True, tokenizer_name="raw")
    b.add_text_field("host", stored=False, tokenizer_name="raw", fast=True)
    for name in TEXT_FIELDS:
        b.add_text_field(name, stored=False, tokenizer_name="en_stem")
    return b.build()


def write_lexical(directory: str, chunks: list[Chunk], heap_bytes: int = 64_000_000) -> None:
    """Index `chunks` into a new tantivy index in `directory`."""
    index = tantivy.Index(schema(), path=directory, reuse=False)
    writer = index.writer(heap_size=heap_bytes, num_threads=1)
    for c in chunks:
        writer.add_document(tantivy.Document(
            chunk_id=c.chunk_id, url=c.url, host=urlsplit(c.url).netloc,
            title=c.title, heading=c.heading, body=c.text))
    writer.commit()
    writer.wait_merging_threads()


def query_terms(text: str) -> list[str]:
    """Plain word terms of a user query: no query syntax survives, so nothing can fail to parse."""
    return _TERM.findall(text.lower())[:MAX_QUERY_TERMS]


class LexicalIndex:
    """Read side of the tantivy index."""

    def __init__(self, directory: str):
        try:
            self.index = tantivy.Index.open(directory)
        except ValueError as exc:
            raise IndexCorrupt(f"cannot open tantivy index in {directory}: {exc}") from None
        self.searcher = self.index.searcher()

    def search(self, text: str, limit: int, url_prefix: str = "", hosts: tuple[str, ...] = ()
               ) -> list[tuple[int, float]]:
        """(chunk_id, bm25 score) best first; an empty list when no term matches. `url_prefix`
        and `hosts` filter inside tantivy, before the top `limit` are taken."""
        terms = query_terms(text)
        if not terms or limit <= 0:
            return []
        query, _errors = self.index.parse_query_lenient(" ".join(terms), list(TEXT_FIELDS),
                                                        field_boosts=FIELD_BOOSTS)
        must = [(tantivy.Occur.Must, query)]
        schema = self.index.schema
        if url_prefix:
            must.append((tantivy.Occur.Must, tantivy.Query.regex_query(schema, "url", re.escape(url_prefix) + ".*")))
        if hosts:
            must.append((tantivy.Occur.Must, tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "host", h)) for h in hosts])))
        if len(must) > 1:
            query = tantivy.Query.boolean_query(must)
        result = self.searcher.search(query, limit)
        out = []
        for score, addr in result.hits:
            doc = self.searcher.doc(addr)
            out.append((int(doc["chunk_id"][0]), float(score)))
        return out

    @property
    def num_docs(self) -> int:
        return self.searcher.num_docs
