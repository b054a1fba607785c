"""Heading-aware chunking of stored page text.

Page text comes from crawler.extract: '#'-prefixed heading lines, blank-line separated
paragraphs, ``` fenced code blocks, and table rows as paragraphs ending in '|'. Sizes are in
words or in tokens of the embedder's tokenizer (ChunkSpec.weigh). Chunks never cross a heading
unless the chunk so far is tiny, never split a code block or table that fits within the hard
limit, and overlap by `overlap` units inside a section.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from crawler.types import Page

_HEADING = re.compile(r"^(#{1,6}) (.*)$")


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage of a page."""

    chunk_id: int
    url: str
    title: str
    heading: str  # heading path, "Section > Subsection"
    position: int  # order of the chunk within its page
    text: str
    content_hash: str
    fetched_at: str = ""
    changed_at: str = ""
    modified_at: str = ""  # the page's own Last-Modified / dateModified, when the crawler has it
    lang: str = ""

    def embed_text(self) -> str:
        """What the embedder sees: title and heading path prefix the body."""
        return embed_text(self.title, self.heading, self.text)


def embed_text(title: str, heading: str, text: str) -> str:
    """A chunk's text as the embedder (and the cross-encoder) reads it: title and heading path, then the body."""
    head = title if not heading or heading == title else f"{title} — {heading}"
    return f"{head}\n{text}"


@dataclass(frozen=True)
class ChunkSpec:
    """Chunking settings, recorded in the manifest. Sizes are in units: one per whitespace word,
    or, with `weigh`, its weight (the embedder's word-piece tokens of that word: BERT-style
    tokenizers split within whitespace words only, so the sum is the exact token count)."""

    size: int = 150
    overlap: int = 30
    min_size: int = 40
    hard_limit: int = 0  # a code block or table up to this stays whole; 0: 3 x size
    weigh: Callable[[str], int] | None = None

    def units(self, text: str) -> int:
        words = text.split()
        return sum(map(self.weigh, words)) if self.weigh else len(words)

    @property
    def block_limit(self) -> int:
        return self.hard_limit or 3 * self.size


def chunk_hash(title: str, heading: str, text: str) -> str:
    """Content hash of a chunk: keys the embedding cache (what the embedder sees changes with it)."""
    return hashlib.sha256(f"{title}\x00{heading}\x00{text}".encode()).hexdigest()


def _blocks(text: str):
    """Yield ('heading', level, text) / ('code', 0, text) / ('table', 0, rows) / ('para', 0, text).
    Extraction writes each table row as its own paragraph ending in '|'; a run of them is one table."""
    table: list[str] = []
    for kind, level, block in _raw_blocks(text):
        if kind == "para" and block.endswith("|"):
            table.append(block)
            continue
        if table:
            yield ("table", 0, "\n".join(table))
            table = []
        yield (kind, level, block)
    if table:
        yield ("table", 0, "\n".join(table))


def _raw_blocks(text: str):
    lines = text.split("\n")
    i, para = 0, []
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            if para:
                yield ("para", 0, " ".join(para))
                para = []
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            yield ("code", 0, "\n".join(lines[i:j + 1]))
            i = j + 1
            continue
        m = _HEADING.match(line)
        if m:
            if para:
                yield ("para", 0, " ".join(para))
                para = []
            yield ("heading", len(m.group(1)), m.group(2).strip())
        elif not line.strip():
            if para:
                yield ("para", 0, " ".join(para))
                para = []
        else:
            para.append(line.strip())
        i += 1
    if para:
        yield ("para", 0, " ".join(para))


def _tail(words: list[str], overlap: int, spec: ChunkSpec) -> list[str]:
    """The last words of `words` holding at least `overlap` units."""
    out, n = [], 0
    for w in reversed(words):
        if n >= overlap:
            break
        out.append(w)
        n += spec.units(w)
    return out[::-1]


def _split_long(kind: str, text: str, spec: ChunkSpec) -> list[str]:
    """Split one oversized block: code and tables by lines, prose by words with overlap."""
    limit = spec.size
    if kind in ("code", "table"):
        out, cur, n = [], [], 0
        for line in text.split("\n"):
            w = spec.units(line) or 1
            if cur and n + w > limit:
                out.append("\n".join(cur))
                cur, n = [], 0
            cur.append(line)
            n += w
        if cur:
            out.append("\n".join(cur))
        return out
    words, pieces, carry, i = text.split(), [], [], 0
    while i < len(words):
        cur = list(carry)
        n = spec.units(" ".join(cur))
        took = 0
        while i < len(words) and (took == 0 or n + spec.units(words[i]) <= limit):
            n += spec.units(words[i])
            cur.append(words[i])
            i += 1
            took += 1
        pieces.append(" ".join(cur))
        carry = _tail(cur, spec.overlap, spec) if i < len(words) and spec.overlap > 0 else []
    return pieces


def chunk_page(page: Page, spec: ChunkSpec, first_id: int = 0) -> list[Chunk]:
    """Split `page` into chunks numbered from `first_id`."""
    stack: list[tuple[int, str]] = []
    pieces: list[tuple[str, str]] = []  # (heading path, text)
    cur: list[str] = []
    cur_words = 0  # in spec units (words or tokens)
    cur_heading = ""
    carry_only = False  # cur holds nothing but the previous chunk's overlap tail

    def flush(keep_overlap: bool) -> None:
        nonlocal cur, cur_words, cur_heading, carry_only
        # A heading never ends a chunk: it moves to the next one, with the text it heads
        # (an FAQ chunk ending in "### How do I get the source?" matched that question but
        # held none of its answer).
        moved: list[str] = []
        while len(cur) > 1 and _HEADING.match(cur[-1]):
            moved.insert(0, cur.pop())
        if cur:
            pieces.append((cur_heading, "\n\n".join(cur)))
        if moved:
            cur_heading = " > ".join(t for _, t in stack)
            cur, cur_words, carry_only = moved, sum(spec.units(h.lstrip("# ")) for h in moved), False
            return
        carry_only = keep_overlap and bool(cur) and spec.overlap > 0
        if carry_only:
            tail = " ".join(_tail(" ".join(cur).split(), spec.overlap, spec))
            cur, cur_words = [tail], spec.units(tail)
        else:
            cur, cur_words = [], 0

    for kind, level, text in _blocks(page.text):
        if kind == "heading":
            if cur_words >= spec.min_size:
                flush(keep_overlap=False)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            if not cur:
                cur_heading = " > ".join(t for _, t in stack)
            cur.append(f"{'#' * level} {text}")
            cur_words += spec.units(text)
            carry_only = False
            continue
        n = spec.units(text)
        # a code block or table stays whole up to the block limit, counting the headings that
        # will move into its chunk with it
        heads = 0
        for line in reversed(cur):
            if not _HEADING.match(line):
                break
            heads += spec.units(line)
        limit = spec.block_limit - heads if kind in ("code", "table") else spec.size
        parts = _split_long(kind, text, spec) if n > limit else [text]
        for part in parts:
            pn = spec.units(part)
            if cur_words and cur_words + pn > spec.size and cur_words > spec.overlap and not carry_only:
                flush(keep_overlap=kind == "para")
            if carry_only and cur_words + pn > spec.block_limit:
                cur, cur_words = [], 0  # drop the overlap tail: this part fills a chunk by itself
            if not cur:
                cur_heading = " > ".join(t for _, t in stack)
            cur.append(part)
            cur_words += pn
            carry_only = False
    while cur:
        flush(keep_overlap=False)
    chunks = []
    for pos, (heading, text) in enumerate(p for p in pieces if p[1].strip()):
        h = chunk_hash(page.title, heading, text)
        chunks.append(Chunk(chunk_id=first_id + pos, url=page.url, title=page.title, heading=heading,
                            position=pos, text=text, content_hash=h, fetched_at=page.fetched_at,
                            changed_at=page.changed_at, modified_at=getattr(page, "modified_at", "") or "",
                            lang=page.lang))
    return chunks
