"""Heading-aware chunking of stored page text.

Page text comes from crawler.extract: '#'-prefixed heading lines, blank-line separated
paragraphs, and ``` fenced code blocks. Chunks never cross a heading unless the chunk
so far is tiny, never split a code block that fits in three chunks, and overlap by
`overlap_words` inside a section.
"""
from __future__ import annotations

import hashlib
import re
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

    def embed_text(self) -> str:
        """What the embedder sees: title and heading path prefix the body."""
        head = self.title if not self.heading or self.heading == self.title else f"{self.title} — {self.heading}"
        return f"{head}\n{self.text}"


@dataclass(frozen=True)
class ChunkSpec:
    """Chunking settings, recorded in the manifest."""

    chunk_words: int = 150
    overlap_words: int = 30
    min_words: int = 40


def chunk_hash(title: str, heading: str, text: str) -> str:
    """Content hash of a chunk: keys the embedding cache (what the embedder sees changes with it)."""
    return hashlib.sha256(f"{title}\x00{heading}\x00{text}".encode()).hexdigest()


def _blocks(text: str):
    """Yield ('heading', level, text) / ('code', 0, text) / ('para', 0, text)."""
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


def _split_long(kind: str, text: str, limit: int, overlap: int) -> list[str]:
    """Split one oversized block: code by lines, prose by words."""
    if kind == "code":
        lines, out, cur, n = text.split("\n"), [], [], 0
        for line in lines:
            w = len(line.split()) or 1
            if cur and n + w > limit:
                out.append("\n".join(cur))
                cur, n = [], 0
            cur.append(line)
            n += w
        if cur:
            out.append("\n".join(cur))
        return out
    words = text.split()
    step = max(1, limit - overlap)
    return [" ".join(words[i:i + limit]) for i in range(0, max(1, len(words) - overlap), step)]


def chunk_page(page: Page, spec: ChunkSpec, first_id: int = 0) -> list[Chunk]:
    """Split `page` into chunks numbered from `first_id`."""
    stack: list[tuple[int, str]] = []
    pieces: list[tuple[str, str]] = []  # (heading path, text)
    cur: list[str] = []
    cur_words = 0
    cur_heading = ""

    def flush(keep_overlap: bool) -> None:
        nonlocal cur, cur_words
        if cur:
            pieces.append((cur_heading, "\n\n".join(cur)))
        if keep_overlap and cur and spec.overlap_words > 0:
            tail = " ".join(" ".join(cur).split()[-spec.overlap_words:])
            cur, cur_words = [tail], len(tail.split())
        else:
            cur, cur_words = [], 0

    for kind, level, text in _blocks(page.text):
        if kind == "heading":
            if cur_words >= spec.min_words:
                flush(keep_overlap=False)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            if not cur:
                cur_heading = " > ".join(t for _, t in stack)
            cur.append(f"{'#' * level} {text}")
            cur_words += len(text.split())
            continue
        n = len(text.split())
        limit = spec.chunk_words * (3 if kind == "code" else 1)
        parts = _split_long(kind, text, spec.chunk_words, spec.overlap_words) if n > limit else [text]
        for part in parts:
            pn = len(part.split())
            if cur_words and cur_words + pn > spec.chunk_words and cur_words > spec.overlap_words:
                flush(keep_overlap=kind != "code")
                if not cur:
                    cur_heading = " > ".join(t for _, t in stack)
            cur.append(part)
            cur_words += pn
    flush(keep_overlap=False)
    chunks = []
    for pos, (heading, text) in enumerate(p for p in pieces if p[1].strip()):
        h = chunk_hash(page.title, heading, text)
        chunks.append(Chunk(chunk_id=first_id + pos, url=page.url, title=page.title, heading=heading,
                            position=pos, text=text, content_hash=h, fetched_at=page.fetched_at,
                            changed_at=page.changed_at))
    return chunks
