"""Page-level BM25: one tantivy document per page (title, headings, URL path words, whole text).

A chunk ranks alone in the chunk index, cut off from its page's title, URL and the rest of the
page; this index scores whole pages, and the retriever fuses its page ranking with the chunk
rankings (retriever.hybrid). Written into each generation's `pages/` folder; a generation built
before it has none, and search then runs on chunks only."""
from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

import tantivy

from crawler.types import Page
from indexer.lexical import open_tantivy, query_terms

PAGE_DIR = "pages"
PAGE_FIELDS = ("title", "headings", "urlwords", "body")
# The fields and boosts of the page query, chosen on three sites (benchmarks/RESULTS.md, issue 14):
# on 500 queries each, page BM25 alone scored 0.729 mean nDCG@10 with these, 0.716 with URL words
# added, 0.691 with title x2 + body (PLAIN_BOOSTS), and chunk BM25 (title x2, heading x1.5) 0.695.
PAGE_BOOSTS = {"title": 1.0, "headings": 1.0, "body": 1.0}
# The plain page BM25 of shared/eval/README.md's baseline: title x2 + body.
PLAIN_BOOSTS = {"title": 2.0, "body": 1.0}
_HEADING = re.compile(r"^#{1,6} (.*)$", re.MULTILINE)
_URL_WORD = re.compile(r"[A-Za-z0-9]+")


def page_doc_fields(page: Page) -> dict[str, str]:
    """The text fields of one page's document."""
    headings = _HEADING.findall(page.text)
    body = _HEADING.sub(r"\1", page.text).replace("```", " ")
    path = unquote(urlsplit(page.url).path)
    path = re.sub(r"\.(html?|php|aspx?)$", "", path)
    return {"title": page.title, "headings": "\n".join(headings),
            "urlwords": " ".join(_URL_WORD.findall(path)), "body": body}


def schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_text_field("url", stored=True, tokenizer_name="raw", index_option="basic")
    for name in PAGE_FIELDS:
        b.add_text_field(name, stored=False, tokenizer_name="en_stem")
    return b.build()


def write_pages(directory: str, pages: list[Page], heap_bytes: int = 64_000_000) -> None:
    """Index `pages` into a new tantivy index in `directory`."""
    os.makedirs(directory, exist_ok=True)
    index = tantivy.Index(schema(), path=directory, reuse=False)
    writer = index.writer(heap_size=heap_bytes, num_threads=1)
    for page in pages:
        writer.add_document(tantivy.Document(url=page.url, **page_doc_fields(page)))
    writer.commit()
    writer.wait_merging_threads()


class PageIndex:
    """Read side of the page index."""

    def __init__(self, directory: str):
        self.index = open_tantivy(directory, self, "page index")
        self.searcher = self.index.searcher()

    def search(self, text: str, limit: int, boosts: dict[str, float] | None = None) -> list[tuple[str, float]]:
        """(page url, bm25 score) best first over the fields of `boosts` (default PAGE_BOOSTS)."""
        terms = query_terms(text)
        if not terms or limit <= 0:
            return []
        boosts = {f: b for f, b in (boosts or PAGE_BOOSTS).items() if b} or PAGE_BOOSTS
        query, _errors = self.index.parse_query_lenient(" ".join(terms), list(boosts), field_boosts=boosts)
        result = self.searcher.search(query, limit)
        return [(self.searcher.doc(addr)["url"][0], float(score)) for score, addr in result.hits]

    @property
    def num_docs(self) -> int:
        return self.searcher.num_docs
