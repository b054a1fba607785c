"""Main-content extraction from HTML into structured plain text.

The output keeps structure for the chunker: headings become '#'-prefixed lines
('## Title'), paragraphs and list items are separated by blank lines, and <pre>
blocks are fenced with ``` so they are never split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

import lxml.html
from lxml import etree

from crawler.dates import iso_date

_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "form", "button",
              "nav", "header", "footer", "aside", "select", "textarea", "object", "embed")
_BOILERPLATE = re.compile(
    r"(^|[\s_-])(nav|navbar|navigation|menu|sidebar|sphinxsidebar|related|breadcrumbs?|footer|"
    r"header|navheader|navfooter|cookie|banner|advert|ads|social|share|toc|skip)([\s_-]|$)", re.I)
_CONTAINERS = {"div", "section", "ul", "ol", "table", "aside", "nav", "header", "footer", "dl"}
_MAIN_XPATHS = ("//main", "//*[@role='main']", "//article", "//*[@id='docContent']",
                "//*[@id='content']", "//*[@class='body']", "//*[@id='main']")
_BLOCK = {"p", "div", "section", "li", "dd", "dt", "blockquote", "table", "tr", "ul", "ol",
          "dl", "figure", "figcaption", "caption", "br", "hr", "td", "th"}
_HEADING = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HIDDEN_STYLE = re.compile(r"(^|;)\s*(display\s*:\s*none|visibility\s*:\s*hidden)\s*(!important\s*)?(;|$)", re.I)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_WS = re.compile(r"[ \t\r\f\v\u00a0]+")


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str
    headings: tuple[str, ...] = ()
    lang: str = ""
    canonical: str = ""
    links: tuple[str, ...] = field(default_factory=tuple)
    modified: str = ""  # ISO 8601 date the page gives for its last change (else publication), or ""


def extract_html(html: str, base_url: str = "") -> Extracted:
    """Extract title, structured main text, headings, language, canonical URL and links."""
    if not html.strip():
        return Extracted(title="", text="")
    html = _XML_DECL.sub("", html, count=1)  # lxml refuses str input that declares an encoding
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return Extracted(title="", text="")
    # only the links returned need resolving: lxml's make_links_absolute rewrote every URL in
    # the page (CSS included) and cost a fifth of extraction on the PostgreSQL docs
    base = base_url
    for tag in root.xpath("//base[@href]"):
        base = _join_url(base_url, tag.get("href", ""))
        break
    title = _clean(" ".join(root.xpath("//title//text()")))
    lang = (root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang") or "").split("-")[0].lower()
    canonical = ""
    for link in root.xpath("//link[@rel='canonical'][@href]"):
        canonical = _join_url(base, link.get("href", "").strip())
        break
    links = tuple(dict.fromkeys(_join_url(base, a.get("href").strip()) for a in root.xpath("//a[@href]")
                                if not a.get("href", "").lstrip().lower().startswith(("javascript:", "mailto:"))))
    modified = page_date(root)
    for el in root.xpath("|".join(f"//{t}" for t in _DROP_TAGS)):
        _remove(el)
    for el in root.xpath("//*[@hidden or @style]"):  # text a reader never sees is not page text
        if el.get("hidden") is not None or _HIDDEN_STYLE.search(el.get("style") or ""):
            _remove(el)
    for el in root.xpath("//*[@class or @id or @role]"):
        if el.tag not in _CONTAINERS:
            continue
        marker = " ".join(filter(None, (el.get("class"), el.get("id"), el.get("role"))))
        if el.get("role") == "main":
            continue
        if _BOILERPLATE.search(marker) and not el.xpath(".//*[@role='main']|.//main|.//article"):
            _remove(el)
    main = None
    for xp in _MAIN_XPATHS:
        found = root.xpath(xp)
        if found:
            main = found[0]
            break
    if main is None:
        main = root.find("body") if root.find("body") is not None else root
    lines: list[str] = []
    headings: list[str] = []
    _walk(main, lines, headings)
    text = _join(lines)
    if not title and headings:
        title = headings[0]
    return Extracted(title=title, text=text, headings=tuple(headings), lang=lang,
                     canonical=canonical, links=links, modified=modified)


# <meta> names and properties giving a page's date, most telling first: a modification date
# beats a publication date
_DATE_META = ("article:modified_time", "og:updated_time", "dateModified", "last-modified", "dcterms.modified",
              "date", "dc.date", "dcterms.date", "article:published_time", "datePublished", "dcterms.created")


def page_date(root) -> str:
    """The date a page states for itself: <meta> tags (see _DATE_META), else the first
    <time datetime> inside the page, as ISO 8601; "" when it states none."""
    found: dict[str, str] = {}
    for meta in root.xpath("//meta[@content][@name or @property or @itemprop or @http-equiv]"):
        for attr in ("property", "name", "itemprop", "http-equiv"):
            key = (meta.get(attr) or "").strip().lower()
            if key:
                found.setdefault(key, meta.get("content", ""))
    for key in _DATE_META:
        value = iso_date(found.get(key.lower()))
        if value:
            return value
    for el in root.xpath("//time[@datetime]"):
        value = iso_date(el.get("datetime"))
        if value:
            return value
    return ""


def _join_url(base: str, href: str) -> str:
    if not base:
        return href
    try:
        return urljoin(base, href)
    except ValueError:  # e.g. a malformed IPv6 host in the href
        return href


def _remove(el) -> None:
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    parent.remove(el)
    if tail:
        prev = el.getprevious()
        # keep the tail text that followed the removed element
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail


def _clean(s: str) -> str:
    return _WS.sub(" ", s).strip()


def _walk(el, out: list[str], headings: list[str]) -> None:
    """Depth-first text collection; '\\n\\n' separates blocks."""
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag in _HEADING:
        text = _clean(el.text_content()).rstrip("¶").strip()
        if text:
            headings.append(text)
            out.append(f"\n\n{'#' * _HEADING[tag]} {text}\n\n")
        if el.tail:
            out.append(el.tail)
        return
    if tag == "pre":
        code = el.text_content().strip("\n")
        if code.strip():
            out.append(f"\n\n```\n{code}\n```\n\n")
        if el.tail:
            out.append(el.tail)
        return
    block = tag in _BLOCK
    if block:
        out.append("\n\n")
    if tag == "li":
        out.append("- ")
    if el.text:
        out.append(el.text)
    for child in el:
        if isinstance(child.tag, str):
            _walk(child, out, headings)
        elif child.tail:  # comments / processing instructions
            out.append(child.tail)
    if tag in ("td", "th"):
        out.append(" | ")
    if block:
        out.append("\n\n")
    if el.tail:
        out.append(el.tail)


def _join(parts: list[str]) -> str:
    raw = "".join(parts)
    blocks, in_code, buf = [], False, []
    for line in raw.split("\n"):
        if line.startswith("```"):
            if in_code:
                buf.append("```")
                blocks.append("\n".join(buf))
                buf, in_code = [], False
            else:
                if buf:
                    blocks.append(_clean(" ".join(buf)))
                buf, in_code = ["```"], True
            continue
        if in_code:
            buf.append(line.rstrip())
            continue
        if not line.strip():
            if buf:
                blocks.append(_clean(" ".join(buf)))
                buf = []
            continue
        if line.lstrip().startswith("#") and re.match(r"^#{1,6} ", line.strip()):
            if buf:
                blocks.append(_clean(" ".join(buf)))
                buf = []
            blocks.append(line.strip())
            continue
        buf.append(line)
    if buf:
        blocks.append("\n".join(buf) if in_code else _clean(" ".join(buf)))
    return "\n\n".join(b for b in blocks if b and b not in ("-", "|"))
