"""The embedded default job: crawl part of the Python docs from a local server, index
them, answer a question with citations."""
from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import FathomError
from crawler.types import CrawlReport
from fathom.engine import Engine
from fathom.localsite import serve_directory
from indexer.build import IndexReport
from synthesizer.types import Answer

PYTHON_DOCS = "/usr/share/doc/python3.11/html"
SECTIONS = ("tutorial", "faq")
QUESTION = "Why are default values shared between objects?"


@dataclass(frozen=True)
class DemoResult:
    crawl: CrawlReport
    index: IndexReport
    answer: Answer


def run_demo(engine: Engine, docs_dir: str = PYTHON_DOCS, sections: tuple[str, ...] = SECTIONS,
             question: str = QUESTION, mode: str | None = None, log=print) -> DemoResult:
    """Serve `docs_dir` on 127.0.0.1, crawl its `sections`, index, and answer `question`."""
    if not os.path.isdir(docs_dir):
        raise FathomError(f"{docs_dir} is missing: install Debian's python3.11-doc "
                          "(bash scripts/setup.sh does it)")
    with serve_directory(docs_dir) as base:
        seeds = [f"{base}{s.strip('/')}/index.html" for s in sections]
        log(f"crawling {', '.join(seeds)}")
        crawl = engine.crawl(seeds)
    log(f"crawled {crawl.fetched} pages ({crawl.new} new, {crawl.changed} changed, "
        f"{crawl.unchanged} unchanged) in {crawl.elapsed_s:.1f}s; indexing")
    index = engine.index()
    log(f"indexed {index.pages} pages as {index.chunks} chunks ({index.embedded} embedded) "
        f"in {index.elapsed_s:.1f}s")
    log(f"asking: {question}")
    answer = engine.ask(question, mode)
    return DemoResult(crawl, index, answer)
