"""Small text tools for evidence checks: content words, sentences, support scores."""
from __future__ import annotations

import re

import tantivy

STOPWORDS = frozenset("""a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself just me
more most my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves use used using get make way one also may might must shall i'm don't can't
does doesn't do is python source sources answer question example
say says said tell tells explain explains describe describes mention mentions documentation docs doc
talk talks""".split())
# The last two lines are words about asking, not about the subject ("What does the documentation
# say about 5.4. Sets?"): missing from a passage, "say" alone made the evidence check abstain.
# tantivy's English Snowball stemmer, the same one the BM25 side indexes with
_ANALYZER = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.lowercase())
             .filter(tantivy.Filter.stemmer("english")).build())
_STOP_STEMS = frozenset(_ANALYZER.analyze(" ".join(STOPWORDS))) | STOPWORDS
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])|\n{2,}|\n(?=[-*] )")


def content_terms(text: str) -> set[str]:
    """Stemmed words of `text` that are not stopwords and are longer than two letters."""
    return {t for t in _ANALYZER.analyze(text) if len(t) > 2 and t not in _STOP_STEMS}


_WORD = re.compile(r"[A-Za-z][\w.+#-]*[\w+#]")
_SENTENCE_END = re.compile(r"[.!?:]\s*$")


def named_terms(question: str) -> list[str]:
    """Names the question mentions: words written with a capital or with a dot inside
    ("PostgreSQL", "Rust", "requests.Session"), not counting a sentence's first word, and only
    those with content words (so "I" and "Python", a stopword here, are not names)."""
    out = []
    for m in _WORD.finditer(question):
        w = m.group()
        if m.start() == 0 or _SENTENCE_END.search(question[:m.start()]):
            continue  # first word of a sentence: capitalised anyway
        if (w[0].isupper() or any(c.isupper() for c in w[1:]) or "." in w) and content_terms(w):
            out.append(w)
    return out


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text) if s and s.strip()]


def support(claim: str, passage_terms: set[str]) -> float:
    """Share of the claim's content words that occur in the passage (1.0 for an empty claim)."""
    terms = content_terms(claim)
    if not terms:
        return 1.0
    return len(terms & passage_terms) / len(terms)
