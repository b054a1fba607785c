"""Extraction choice (issue 4): Fathom's lxml extractor vs trafilatura on documentation pages.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/extract_compare.py [--pages N] [--json]

Takes N pages (default 50) spread evenly over the sorted file lists of the PostgreSQL docs and
of the Python docs' library/ and tutorial/ pages, and reports per site and extractor:
- ms/page (median of 3 passes, interleaved per page, after a warm-up pass);
- nav_leak: pages whose text still holds navigation (PostgreSQL: the "Prev"/"Up"/"Home" links
  of the nav header and footer; Python: the sidebar's "Previous topic", "Next topic",
  "This Page", "Show Source" or the footer's "Found a bug?");
- code_kept: share of <pre> blocks whose first 60 non-space characters appear in the text;
- headings_kept: share of <h1>-<h3> texts found in the text;
- paragraphs_kept: share of the main column's <p> texts (first 80 characters) found in the text;
- words: mean words of output.
An `all_text` row (every text node of <body>, no extraction) shows what the checks catch.
trafilatura is optional: without it only our figures are printed (`pip install trafilatura`).

It also measures the language fallback (`crawler.lang.detect_language`, used when a page has no
<html lang>): on our text of the same pages (all English) and on 10 samples of ~150 words per
language built from the translated messages (msgstr) of /usr/share/locale/<lang>/*.mo.
Writes benchmarks/out/extract_compare.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lxml.html  # noqa: E402

from crawler.extract import extract_html  # noqa: E402
from crawler.lang import STOPWORDS, detect_language  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out", "extract_compare.json")
SITES = {
    "postgresql": ("/usr/share/doc/postgresql-doc-15/html", ("",), "//*[@id='docContent']"),
    "python": ("/usr/share/doc/python3.11/html", ("library/", "tutorial/"), "//*[@class='body']"),
}
NAV = {
    "postgresql": re.compile(r"\bPrev\b|\bHome\b|(^|\n)Up(\n|$)|\bUp\s+Home\b"),
    "python": re.compile(r"Previous topic|Next topic|This Page|Show Source|Found a bug\?|Navigation\n"),
}
_SPACE = re.compile(r"\s+")


def norm(s: str) -> str:
    return _SPACE.sub(" ", s).replace("¶", "").strip()


def nospace(s: str) -> str:
    return _SPACE.sub("", s)


def pick(root: str, subdirs: tuple[str, ...], n: int) -> list[str]:
    files = sorted(os.path.join(root, d, f) for d in subdirs for f in os.listdir(os.path.join(root, d))
                   if f.endswith(".html"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def truth(html: str, main_xpath: str) -> dict:
    """What a good extraction keeps, read from the page source."""
    root = lxml.html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", html))
    for el in root.xpath("//*[contains(@class,'navheader') or contains(@class,'navfooter') or "
                         "contains(@class,'sphinxsidebar') or contains(@class,'related') or "
                         "contains(@class,'footer')]"):
        el.drop_tree()
    main = (root.xpath(main_xpath) or [root])[0]
    pres = [nospace(p.text_content())[:60] for p in main.xpath(".//pre") if nospace(p.text_content())]
    heads = [norm(h.text_content()) for h in main.xpath(".//h1|.//h2|.//h3") if norm(h.text_content())]
    paras = [norm(p.text_content())[:80] for p in main.xpath(".//p") if len(norm(p.text_content())) >= 20]
    return {"pres": pres, "heads": heads, "paras": paras}


def ours(html: str, url: str) -> str:
    return extract_html(html, url).text


def all_text(html: str, url: str) -> str:
    """No extraction: every text node of <body>. The floor that shows the checks can fail."""
    root = lxml.html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", html))
    for el in root.xpath("//script|//style"):
        el.drop_tree()
    body = root.find("body")
    return "\n".join(t.strip() for t in (body if body is not None else root).itertext() if t.strip())


def score(text: str, t: dict, nav: re.Pattern) -> dict:
    flat, squeezed = norm(text), nospace(text)
    share = (lambda found, total: found / total if total else None)
    return {
        "nav_leak": bool(nav.search(text)),
        "code": share(sum(p in squeezed for p in t["pres"]), len(t["pres"])),
        "heads": share(sum(h in flat for h in t["heads"]), len(t["heads"])),
        "paras": share(sum(p in flat for p in t["paras"]), len(t["paras"])),
        "words": len(text.split()),
    }


def locale_samples(lang: str, n: int = 10, words: int = 150) -> list[str]:
    """Up to `n` texts of about `words` words from the translated messages of `lang`'s catalogs."""
    import gettext
    import glob
    texts, buf = [], []
    for mo in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo")):
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, ValueError, UnicodeDecodeError, KeyError):
            continue
        for msgid, msgstr in catalog.items():
            if isinstance(msgstr, str) and msgid and len(msgstr.split()) >= 4 and "%" not in msgstr:
                buf += msgstr.split()
                if len(buf) >= words:
                    texts.append(" ".join(buf))
                    buf = []
                    if len(texts) == n:
                        return texts
    return texts


def language_check(doc_texts: list[str]) -> dict:
    out = {"docs_en": {"pages": len(doc_texts), "right": sum(detect_language(t) == "en" for t in doc_texts),
                       "unsure": sum(detect_language(t) == "" for t in doc_texts)}}
    for lang in STOPWORDS:
        samples = locale_samples(lang)
        got = [detect_language(t) for t in samples]
        out[lang] = {"samples": len(samples), "right": got.count(lang), "unsure": got.count(""),
                     "wrong": sorted(g for g in got if g not in ("", lang))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50, help="pages per site (default 50)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extractors = {"fathom": ours, "all_text": all_text}
    try:
        import trafilatura

        extractors["trafilatura"] = lambda html, url: trafilatura.extract(
            html, url=url, include_tables=True, include_comments=False, output_format="txt") or ""
        extractors["trafilatura_md"] = lambda html, url: trafilatura.extract(
            html, url=url, include_tables=True, include_comments=False, include_formatting=True,
            output_format="markdown") or ""
        version = trafilatura.__version__
    except ImportError:
        version = None
        print("trafilatura is not installed: only Fathom's extractor is measured", file=sys.stderr)
    results: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "loadavg_before": os.getloadavg(), "trafilatura": version, "sites": {}}
    for site, (root, subdirs, main_xpath) in SITES.items():
        if not os.path.isdir(root):
            print(f"{root} is missing: skipping {site}", file=sys.stderr)
            continue
        files = pick(root, subdirs, args.pages)
        pages = []
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                html = f.read()
            pages.append((path, "file://" + path, html, truth(html, main_xpath)))
        times = {name: {p[0]: [] for p in pages} for name in extractors}
        outputs = {name: {} for name in extractors}
        for rep in range(4):  # pass 0 warms up; the others are timed
            for path, url, html, _ in pages:
                for name, fn in extractors.items():
                    t = time.perf_counter()
                    outputs[name][path] = fn(html, url)
                    if rep:
                        times[name][path].append(time.perf_counter() - t)
        per = {}
        for name in extractors:
            rows = [score(outputs[name][p[0]], p[3], NAV[site]) for p in pages]

            def mean(key, rows=rows):
                vals = [r[key] for r in rows if r[key] is not None]
                return round(statistics.fmean(vals), 3) if vals else None
            per[name] = {
                "ms_per_page": round(1000 * statistics.fmean(statistics.median(v) for v in times[name].values()), 2),
                "nav_leak_pages": sum(r["nav_leak"] for r in rows), "code_kept": mean("code"),
                "headings_kept": mean("heads"), "paragraphs_kept": mean("paras"), "words": mean("words"),
                "empty_pages": sum(1 for r in rows if r["words"] == 0),
            }
        results["sites"][site] = {"pages": len(pages), "extractors": per}
        results.setdefault("_doc_texts", []).extend(outputs["fathom"].values())
    results["language"] = language_check(results.pop("_doc_texts", []))
    results["loadavg_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    cols = ("ms_per_page", "nav_leak_pages", "code_kept", "headings_kept", "paragraphs_kept", "words", "empty_pages")
    print(f"{'site':<11} {'extractor':<15} " + " ".join(f"{c:>15}" for c in cols))
    for site, r in results["sites"].items():
        for name, m in r["extractors"].items():
            print(f"{site:<11} {name:<15} " + " ".join(f"{str(m[c]):>15}" for c in cols))
    print("\nlanguage fallback: " + "; ".join(
        f"{k} {v['right']}/{v.get('samples', v.get('pages'))} right, {v['unsure']} unsure"
        + (f", wrong {v['wrong']}" if v.get("wrong") else "") for k, v in results["language"].items()))
    print(f"\n{args.pages} pages per site; trafilatura {version or 'not installed'}; 1-min load "
          f"{results['loadavg_before'][0]:.2f} before, {results['loadavg_after'][0]:.2f} after")


if __name__ == "__main__":
    main()
