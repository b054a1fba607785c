"""Derive a retrieval qrels set from a site's own index: Sphinx genindex.html or Texinfo index pages.

    python benchmarks/make_qrels.py /usr/share/doc/sphinx-doc/html --site sphinx \\
        -o benchmarks/data/sphinx_qrels.jsonl

As ../shared/eval/README.md does for the PostgreSQL manual's back-of-book index: each index
entry is a query and the pages it links to are relevant (anchors stripped). An entry's own text
is the query ("AJAXCRAWL_ENABLED", "add_css"); a sub-entry adds its words ("AJAXCRAWL_ENABLED
setting", "-b sphinx-build command line option"), except Sphinx's "(… method)" qualifiers, which
only name where a same-named object lives: they are dropped, and the entries they distinguish
merge into one query whose relevant set is the union, as do Sphinx's "pair" entries, listed once
per word order ("epub_fix_images configuration value", "configuration value epub_fix_images"). Queries that end up with more than
--max-relevant pages (too generic to judge), links to pages missing from the site, and links to
the index itself are left out. The rows are shuffled with a fixed seed, so `--limit N` of
`fathom eval` takes an unbiased subset rather than the entries that sort first.

A site without genindex.html is read as a Texinfo HTML manual: every page holding a
`<table class="index-cp">` (concept index) or `index-fn` (function/macro index) is a back-of-book
index, one entry per row ("arguments, joining" -> Shift.html).

The sites (Debian packages; install with `apt-get install -y --no-install-recommends PKG`):
  sphinx-doc         -> /usr/share/doc/sphinx-doc/html          (Sphinx 5.3 manual, 137 pages)
  python-scrapy-doc  -> /usr/share/doc/python-scrapy-doc/html   (Scrapy 2.8 docs, 125 pages)
  m4-doc             -> /usr/share/doc/m4                       (GNU M4 manual, Texinfo, 105 pages)
Output rows: {"qid", "query", "relevant": ["page.html", ...]}, the pg_qrels format."""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys

from lxml import html as lxml_html

_PAREN = re.compile(r"\s*\([^()]*\)\s*$")


def clean(text: str) -> str:
    """An index entry as query words: whitespace collapsed, Sphinx's trailing '(...)' qualifier
    and the '()' of a callable removed."""
    text = " ".join(text.split())
    text = _PAREN.sub("", text)
    return text.replace("()", "").strip(" ,;")


def entries(index_html: str):
    """(query, linked page) pairs of a Sphinx genindex page."""
    tree = lxml_html.fromstring(index_html)
    for top in tree.xpath('//table[contains(@class, "genindextable")]/tr/td/ul/li'):
        link = top.find("a")
        own = link.text_content() if link is not None else (top.text or "")
        term = clean(own)
        if not term:
            continue
        if link is not None and link.get("href"):
            yield term, link.get("href")
        for sub in top.xpath("./ul/li"):
            for a in sub.xpath(".//a[@href]"):
                words = " ".join(a.text_content().split())
                if words.startswith("("):
                    yield term, a.get("href")  # the same name elsewhere: same query
                else:
                    extra = clean(words)
                    yield (f"{term} {extra}" if extra else term), a.get("href")


def texinfo_entries(index_html: str):
    """(query, linked page) pairs of a Texinfo index page (rows of table.index-cp / index-fn ...)."""
    tree = lxml_html.fromstring(index_html)
    for row in tree.xpath('//table[starts-with(@class, "index-")]//tr'):
        cells = row.findall("td")
        link = cells[1].find("a") if len(cells) > 1 else None
        if link is not None and link.get("href"):
            term = " ".join(link.text_content().replace(",", " ").split())
            if term:
                yield term, link.get("href")


def site_entries(root: str):
    path = os.path.join(root, "genindex.html")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            yield from entries(f.read())
        return
    for name in sorted(os.listdir(root)):
        if name.endswith(".html"):
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
            if 'class="index-' in text:
                yield from texinfo_entries(text)


def build(root: str, site: str, max_relevant: int, seed: int) -> list[dict]:
    merged: dict[str, tuple[str, dict[str, None]]] = {}
    for query, href in site_entries(root):
        target = href.split("#", 1)[0].lstrip("/")
        if not target or "://" in href or target.startswith(("genindex", "search", "py-modindex")) \
                or target.endswith("-index.html"):
            continue
        if not os.path.exists(os.path.join(root, target)):
            continue
        key = " ".join(sorted(query.lower().split()))  # "pair" entries appear in both word orders
        merged.setdefault(key, (query, {}))[1][target] = None
    rows = [{"query": q, "relevant": list(pages)} for q, pages in merged.values()
            if 0 < len(pages) <= max_relevant and len(q) >= 2]
    random.Random(seed).shuffle(rows)
    return [{"qid": f"{site}-{i + 1}", **r} for i, r in enumerate(rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", help="html root holding genindex.html")
    ap.add_argument("--site", required=True, help="short name, the qid prefix")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--max-relevant", type=int, default=10)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        sys.exit(f"no site at {args.root}: install the site's Debian package (see --help)")
    rows = build(args.root, args.site, args.max_relevant, args.seed)
    if not rows:
        sys.exit(f"no index entries under {args.root} (no genindex.html or Texinfo index pages)")
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    pages = {p for r in rows for p in r["relevant"]}
    print(f"{len(rows)} queries over {len(pages)} relevant pages -> {args.out}")


if __name__ == "__main__":
    main()
