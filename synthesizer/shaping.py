"""Answer text a person wants to read: code blocks whole and quoted from their source (or
absent), no markers inside code, no trailing fragment, one source per page section, and the
copy-length measure (longest run of answer words that stands verbatim in a source)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_FENCE = re.compile(r"`{3,}")
_LANG = re.compile(r"[A-Za-z0-9_+.-]*[ \t]*(?:\n|$)")
_MARKER = re.compile(r"\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class Segment:
    """A run of prose, or one fenced code block (`text` is the code without its fences)."""

    text: str
    code: bool
    closed: bool = True  # a code block whose closing fence never came is not closed


def segments(text: str) -> list[Segment]:
    """Split text into prose and fenced code blocks, in order. A fence may stand anywhere in a
    line (small models write them inline); an opening fence may carry a language word."""
    out: list[Segment] = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            break
        out.append(Segment(text[pos:opening.start()], code=False))
        body_start = opening.end()
        lang = _LANG.match(text, body_start)
        if lang:
            body_start = lang.end()
        closing = _FENCE.search(text, body_start)
        if closing is None:
            out.append(Segment(text[body_start:].strip("\n"), code=True, closed=False))
            pos = len(text)
            break
        out.append(Segment(text[body_start:closing.start()].strip("\n"), code=True))
        pos = closing.end()
    if pos < len(text):
        out.append(Segment(text[pos:], code=False))
    return [s for s in out if s.text.strip()]


_POINTER_CLAUSE = re.compile(
    r",?\s+(?:as\s+)?(?:is\s+|are\s+)?(?:shown|demonstrated|illustrated|seen|explained)\s+(?:in|by)\s+"
    r"(?:the|this|that)\s+(?:following\s+|above\s+)?(?:code\s+)?(?:example|snippet|code|listing)"
    r"(?:\s+(?:below|above))?(?:\s+(?:in|from)\s+(?:the\s+)?source(?:\s*\[?\d+\]?)?)?(?=\s*[.!]?$)", re.I)
_POINTER_SENTENCE = re.compile(
    r"^(?:this|that|it|these|the (?:code|example))\s+(?:is|are|can be)\s+(?:shown|demonstrated|illustrated|seen)"
    r"\s+(?:in|by)\b.*\b(?:example|snippet|code|source)\b|^see\b.*\b(?:example|snippet|code)\b", re.I)


def unpoint(claim: str) -> str | None:
    """`claim` without a pointer to a code example, for an answer that shows none: None when the
    whole sentence is such a pointer ("This is illustrated by the example in source."), else the
    sentence with a trailing ", as shown in the code example" taken off."""
    if _POINTER_SENTENCE.search(claim.strip()):
        return None
    return _POINTER_CLAUSE.sub("", claim.rstrip())


def _norm_code(code: str) -> str:
    return " ".join(_MARKER.sub(" ", code).split())


def source_code_blocks(passage: str) -> list[str]:
    """The fenced code blocks of a passage, exactly as they stand there."""
    return [s.text for s in segments(passage) if s.code and s.closed]


def quote_code(code: str, passages: list[str]) -> tuple[int, str] | None:
    """(passage index, the source's whole code block) that the model's `code` reproduces, or
    None. The model's block matches when, whitespace and citation markers aside, it equals a
    source block, is part of one, or holds one whole; the source block is what is shown."""
    want = _norm_code(code)
    if len(want) < 2:
        return None
    best: tuple[float, int, str] | None = None
    for i, p in enumerate(passages):
        for block in source_code_blocks(p):
            have = _norm_code(block)
            if not have:
                continue
            if want == have:
                score = 2.0
            elif want in have and len(want) >= 0.3 * len(have):
                score = 1.0 + len(want) / len(have)
            elif have in want and len(have) >= 0.6 * len(want):
                score = 1.0 + len(have) / len(want)
            else:
                share = _line_share(code, block)
                if share < 0.6:
                    continue
                score = 1.0 + share / 2
            if best is None or score > best[0]:
                best = (score, i, block)
    return (best[1], best[2]) if best else None


def _code_lines(code: str) -> list[str]:
    lines = [_norm_code(line.split("#", 1)[0]) for line in code.splitlines()]
    return [line for line in lines if line.strip(". ")]


def _line_share(code: str, block: str) -> float:
    """Share of the model's code lines (comments, markers and '...' lines aside) that are lines
    of the source block; 0 when it has fewer than two such lines or its first is not there."""
    mine, theirs = _code_lines(code), set(_code_lines(block))
    if len(mine) < 2 or mine[0] not in theirs:
        return 0.0
    return sum(line in theirs for line in mine) / len(mine)


def ends_complete(sentence: str, stops: str = ".!?") -> bool:
    """True when a prose sentence ends like a finished sentence (one of `stops`, or a closing
    quote or bracket after one), markers aside; a trailing ':' or a cut-off word is a fragment."""
    s = _MARKER.sub("", sentence).rstrip()
    s = s.rstrip("\"')]*`")
    return s[-1:] != "" and s[-1:] in stops


def repeats(sentence: str, earlier: list[str]) -> bool:
    """True when `sentence` says again what one of `earlier` said: the same words, or (for
    sentences of five words or more) 80% of its distinct words already in one of them."""
    mine = set(words(_MARKER.sub(" ", sentence)))
    if not mine:
        return False
    for other in earlier:
        theirs = set(words(_MARKER.sub(" ", other)))
        if mine == theirs or (len(mine) >= 5 and len(mine & theirs) >= 0.8 * len(mine)):
            return True
    return False


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def written_words(text: str) -> list[str]:
    """The words of `text` as written (case kept), citation markers left out."""
    return _WORD.findall(_MARKER.sub(" ", text))


def prose_only(text: str) -> str:
    """`text` without its fenced code blocks, inline code and citation markers."""
    return _MARKER.sub(" ", " ".join(s.text for s in segments(text) if not s.code)).replace("`", " ")


def longest_copied_run(answer: str, sources: list[str]) -> int:
    """Longest run of consecutive answer words (code and markers excluded) that also stands,
    word for word, in one of `sources`."""
    a = words(prose_only(answer))
    if not a:
        return 0
    best = 0
    for src in sources:
        b = words(src)
        at: dict[str, list[int]] = {}
        for j, w in enumerate(b):
            at.setdefault(w, []).append(j)
        # longest common substring over words: prev[j] = run length ending at a[i-1], b[j]
        prev: dict[int, int] = {}
        for w in a:
            cur = {}
            for j in at.get(w, ()):
                n = prev.get(j - 1, 0) + 1
                cur[j] = n
                if n > best:
                    best = n
            prev = cur
    return best


def broken_code(answer: str, sources: Sequence[str] = ()) -> bool:
    """True when the answer has an unclosed code fence, a citation marker inside code, or ends
    on a fragment (its last prose does not end a sentence). Given the cited `sources`, a code block
    must also stand in one of them letter for letter, and then a "[10]" inside it is the source's own."""
    segs = segments(answer)
    for seg in (s for s in segs if s.code):
        quoted = any(seg.text in src for src in sources)
        if not seg.closed or (sources and not quoted) or (_MARKER.search(seg.text) and not quoted):
            return True
    if answer.count("```") % 2:
        return True
    prose = [s for s in segs if not s.code]
    if not prose:
        return False
    last = prose[-1].text.strip()
    if segs[-1].code:  # an answer may end on a whole code block introduced by "...:"
        return False
    return not ends_complete(last)
