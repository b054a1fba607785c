"""Language of a text by its stopwords, for pages without <html lang>.

A small, dependency-free detector: the share of a text's words that are common function
words of each language. Function words are frequent in any prose and rare across languages,
so a few hundred words tell the languages below apart; code, tables and very short texts
give "" rather than a guess.
"""
from __future__ import annotations

import re
from collections import Counter

STOPWORDS = {
    "en": "the of and to in is that for it as with was on be by this are or not from at which but have an "
          "they you he we can if has were their will all would there been one its when so what more",
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an "
          "werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum",
    "fr": "de la le et les des en un du une que est pour qui dans par plus pas au sur ne se il sont ce "
          "avec son nous elle ou mais comme on leur cette aux été fait sa ses vous",
    "es": "de la que el en y los del se las por un para con no una su al es lo como más pero sus le "
          "ya o fue este ha sí porque esta son entre cuando muy sin sobre también",
    "it": "di e il la che in un per è del non una con sono da si le dei al lo come della più nel "
          "gli alla anche ma se ha questo delle dal nella tra sul",
    "pt": "de a o que e do da em um para é com não uma os no se na por mais as dos como mas foi ao "
          "ele das tem à seu sua ou ser quando muito há nos já está também",
    "nl": "de en van het een in is dat op te zijn met voor niet aan er die om als ook maar bij dan "
          "nog wordt door naar kan zo uit worden heeft hij",
    "sv": "och i att det som en på är av för med till den har de inte om ett han men var jag sig "
          "från vi så kan man när år säger hon under också efter",
    "ru": "и в не на я что он с как а то все она так его но да ты к у же вы за бы по только её мне "
          "было вот от меня ещё нет о из ему теперь когда",
    "pl": "i w nie na się z do to że jest a o jak ale po co tak za od są by już jego być przez "
          "może tylko dla czy które ich tego",
}
_SETS = {lang: frozenset(words.split()) for lang, words in STOPWORDS.items()}
CYRILLIC = frozenset({"ru"})  # the other lists are Latin-script languages


def _cyrillic(word: str) -> bool:
    return "\u0400" <= word[0] <= "\u04ff"

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
MIN_WORDS = 20  # fewer words than this: no guess
MIN_SHARE = 0.12  # the winner's stopwords must be at least this share of the words
MIN_LEAD = 1.5  # and this many times the runner-up's


def detect_language(text: str, max_words: int = 500) -> str:
    """ISO 639-1 code of the language of the first `max_words` words of `text`, or "" when unsure."""
    words = _WORD.findall(text[:max_words * 12])[:max_words]
    if len(words) < MIN_WORDS:
        return ""
    # the script most words are in decides which lists compete: English identifiers in a
    # Russian text must not make it English
    cyrillic = [w for w in words if _cyrillic(w)]
    if 2 * len(cyrillic) > len(words):
        words, langs = cyrillic, CYRILLIC
    else:
        words, langs = [w for w in words if not _cyrillic(w)], _SETS.keys() - CYRILLIC
    counts = Counter(w.lower() for w in words)
    scores = sorted(((sum(counts[w] for w in _SETS[lang].intersection(counts)), lang) for lang in langs),
                    reverse=True)
    (top, best), second = scores[0], scores[1][0] if len(scores) > 1 else 0
    if top < MIN_SHARE * len(words) or top < MIN_LEAD * second:
        return ""
    return best
