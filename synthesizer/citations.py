"""Citation checking: keep only [n] markers that point at a retrieved passage which
supports the sentence, re-attach or drop unsupported sentences, renumber what is cited."""
from __future__ import annotations

import re
from dataclasses import dataclass

from synthesizer.shaping import ends_complete, quote_code, repeats, segments, unpoint
from synthesizer.textutil import content_terms, split_sentences, support

_MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
ABSTAIN_PATTERNS = re.compile(
    r"not in (the )?sources|sources (do not|don't|doesn't|does not) (say|answer|contain|mention)|"
    r"(cannot|can't|unable to) (find|answer|determine)|no information|not mentioned|not provided",
    re.I)


@dataclass(frozen=True)
class Checked:
    """The verified answer text with markers numbered over `cited` (passage indexes, 0-based)."""

    text: str
    cited: tuple[int, ...]
    kept: int  # sentences kept
    dropped: int  # sentences dropped as unsupported
    invalid_markers: int  # markers that pointed at no passage
    supported_citations: int
    total_citations: int
    # per kept sentence: (claim without markers, passage indexes cited, status, support of the first);
    # a quoted code block is one item whose claim is the fenced block
    sentences: tuple[tuple[str, tuple[int, ...], str, float], ...] = ()
    code_quoted: int = 0  # code blocks shown, each exactly as in its source passage
    code_dropped: int = 0  # code blocks of the draft found in no source (regenerated or invented)
    fragments_dropped: int = 0  # unfinished trailing sentences, and "...:" lead-ins to dropped code
    repeats_dropped: int = 0  # sentences that said again what an earlier one said
    questions_dropped: int = 0  # sentences that asked a question (the page's FAQ heading, echoed)
    pointers_dropped: int = 0  # pointers to a code example the answer does not show (sentences or clauses)


_FRAME = re.compile(r"^(?:the )?(?:direct |short )?answer(?: to (?:the|your) question)?(?: is(?: that)?\s+|\s*:\s*)", re.I)


_ECHO = re.compile(r",?\s*\b(?:start with |starting with )?a one-sentence answer\s*[:,-]?\s*", re.I)
# the prompt's structure echoed as a label: "One sentence answer: Yes ...", "Reason in two sentences: ..."
_LABEL = re.compile(
    r"^(?:(?:the )?(?:one[- ]sentence|short|direct|final|brief) answer|answer|"
    r"(?:the )?reasons?(?: in (?:one or )?(?:one|two|2|a few) sentences?)?|explanation|why|"
    r"paraphrased?|in (?:my|your) own words)\s*[:\-\u2013]\s*", re.I)


def _unframe(claim: str) -> str:
    """'The direct answer is that defaults ...' -> 'Defaults ...' (the prompt's words echoed)."""
    claim = " ".join(_ECHO.sub(" ", claim).split())
    label = _LABEL.match(claim)
    if label and len(claim) - label.end() >= 2:
        claim = claim[label.end()].upper() + claim[label.end() + 1:]
    m = _FRAME.match(claim)
    if not m or len(claim) - m.end() < 10:
        return claim
    rest = claim[m.end():]
    return rest[0].upper() + rest[1:]


def _refs(sentence: str, n_passages: int) -> tuple[list[int], int]:
    refs: list[int] = []
    invalid = 0
    for m in _MARKER.finditer(sentence):
        for num in m.group(1).split(","):
            n = int(num) - 1
            if 0 <= n < n_passages:
                if n not in refs:
                    refs.append(n)
            else:
                invalid += 1
    return refs, invalid


def verify(answer: str, passages: list[str], min_support: float, drop_unsupported: bool = True) -> Checked:
    """Check every sentence of `answer` against the passages it cites.

    A marker [n] outside 1..len(passages) is removed. A sentence whose cited passages do not
    support it (share of content words < min_support) is re-attached to the best supporting
    passage if one does, otherwise dropped (or kept without a marker when drop_unsupported is
    False). A code block is kept only as the whole block of the source it reproduces, cited by
    the sentence that introduces it; markers never go inside it. An unfinished last sentence
    and a "...:" lead-in to code that was dropped are removed. Markers are renumbered 1..m in
    order of first use."""
    terms = [content_terms(p) for p in passages]
    # items: [kind, claim, refs, status, support]
    items: list[list] = []
    dropped = invalid = supported = total = code_dropped = fragments = repeated = questions = pointers = 0
    for seg in segments(answer):
        if seg.code:
            quoted = quote_code(seg.text, passages)
            if quoted is None:
                code_dropped += 1
                continue
            n, block = quoted
            if any(it[0] == "code" and it[1] == block for it in items):
                continue  # the same source block twice
            items.append(["code", block, [n], "supported", 1.0])
            continue
        for sentence in split_sentences(seg.text):
            refs, bad = _refs(sentence, len(passages))
            invalid += bad
            claim = _unframe(_MARKER.sub("", sentence).strip())
            if not content_terms(claim):
                if claim.endswith(":") and len(claim) > 1:  # "For example:" may introduce code
                    items.append(["prose", claim, [], "supported", 1.0])
                continue  # fragments such as "1." or ":" carry no claim
            if claim.rstrip("\"')*`").endswith("?"):
                questions += 1
                continue  # an answer states; a question here is the page's heading, copied
            if repeats(claim, [it[1] for it in items if it[0] == "prose"]):
                repeated += 1
                continue  # said already (small models loop)
            good = [n for n in refs if support(claim, terms[n]) >= min_support]
            total += len(refs)
            supported += len(good)
            status = "supported"
            if not good:
                scores = [support(claim, t) for t in terms]
                best = max(range(len(scores)), key=scores.__getitem__) if scores else -1
                if best >= 0 and scores[best] >= min_support:
                    good, status = [best], "reattached"
                elif drop_unsupported:
                    dropped += 1
                    continue
                else:
                    status = "unsupported"
            items.append(["prose", claim, good, status, support(claim, terms[good[0]]) if good else 0.0])
    # a "...:" lead-in must be followed by its code; the answer must end on a finished sentence
    # (or on a code block its lead-in introduces)
    kept: list[list] = []
    for i, it in enumerate(items):
        nxt = items[i + 1][0] if i + 1 < len(items) else None
        if it[0] == "prose" and it[1].rstrip().endswith(":") and nxt != "code":
            fragments += 1
            continue
        kept.append(it)
    while kept and kept[-1][0] == "prose" and not ends_complete(kept[-1][1]):
        kept.pop()
        fragments += 1
    if not any(it[0] == "code" for it in kept):  # "as shown in the code example": no example is shown
        for it in [it for it in kept if it[0] == "prose"]:
            claim = unpoint(it[1])
            if claim is None:
                kept.remove(it)
                pointers += 1
            elif claim != it[1]:
                it[1] = claim
                pointers += 1
    # a code block is cited through the sentence before it (markers never go inside code)
    for i, it in enumerate(kept):
        if it[0] == "code":
            prev = kept[i - 1] if i and kept[i - 1][0] == "prose" else None
            if prev is not None and it[2][0] not in prev[2]:
                prev[2] = prev[2] + [it[2][0]]
    order: list[int] = []
    for it in kept:
        for n in it[2]:
            if n not in order:
                order.append(n)
    number = {n: i + 1 for i, n in enumerate(order)}
    text = ""
    for i, it in enumerate(kept):
        kind, claim, refs = it[0], it[1], it[2]
        marks = "".join(f"[{number[n]}]" for n in refs)
        if kind == "code":  # the block exactly as quoted: its indentation is never touched
            if not (i and kept[i - 1][0] == "prose"):
                text += f" From [{number[refs[0]]}]:"
            text = f"{text.rstrip(' ')}\n\n```\n{claim}\n```\n\n"
            continue
        prose = f"{claim[:-1]} {marks}{claim[-1]}" if marks and claim[-1:] in ".!?:" else f"{claim} {marks}".rstrip()
        prose = re.sub(r" *\n\n *", "\n\n", prose)
        text += prose if not text or text.endswith("\n") else " " + prose
    text = text.strip()
    sentences = tuple((claim if kind == "prose" else f"```\n{claim}\n```", tuple(refs), st, round(sup, 3))
                      for kind, claim, refs, st, sup in kept)
    return Checked(text=text, cited=tuple(order), kept=sum(it[0] == "prose" for it in kept), dropped=dropped,
                   invalid_markers=invalid, supported_citations=supported, total_citations=total,
                   sentences=sentences, code_quoted=sum(it[0] == "code" for it in kept),
                   code_dropped=code_dropped, fragments_dropped=fragments, repeats_dropped=repeated,
                   questions_dropped=questions, pointers_dropped=pointers)


def support_span(claim: str, passage: str) -> tuple[int, int]:
    """Character offsets of the run of passage sentences (one, or two adjacent) that holds the
    most of the claim's content words; (-1, -1) when no sentence shares a word with it."""
    want = content_terms(claim)
    if not want:
        return -1, -1
    spans, pos = [], 0
    for s in split_sentences(passage):
        start = passage.find(s, pos)
        if start < 0:
            continue
        spans.append((start, start + len(s), content_terms(s) & want))
        pos = start + len(s)
    best, best_score = (-1, -1), 0.0
    for i, (a, b, terms) in enumerate(spans):
        for j in (i, i + 1):
            if j >= len(spans):
                break
            covered = terms | spans[j][2]
            # a second sentence must add words to be worth the longer highlight
            score = len(covered) - (0.5 if j > i else 0.0)
            if covered and score > best_score:
                best, best_score = (a, spans[j][1]), score
    return best


def shown_support(text: str, cited_passages: list[str], min_support: float) -> tuple[int, int]:
    """(supported, total) over every [n] marker of a final answer, where [n] refers to
    `cited_passages[n-1]`: re-checks what the user sees, after renumbering."""
    terms = [content_terms(p) for p in cited_passages]
    supported = total = 0
    for sentence in split_sentences(text):
        claim = _MARKER.sub("", sentence).strip()
        for m in _MARKER.finditer(sentence):
            for num in m.group(1).split(","):
                n = int(num) - 1
                total += 1
                supported += 0 <= n < len(terms) and support(claim, terms[n]) >= min_support
    return supported, total


def looks_like_abstention(text: str) -> bool:
    return bool(ABSTAIN_PATTERNS.search(text[:300]))
