"""Near-duplicate detection: the crawler's SimHash (3-bit threshold) against MinHash/LSH
(datasketch, Jaccard threshold on the same word 3-shingles), on real documentation pages.

Missed near-duplicates: each page is paired with a copy that has one word inserted (and one
with 2% of its words replaced); a method that does not flag the pair missed it. False merges:
among the real pages (all distinct URLs), pairs a method flags whose exact shingle Jaccard is
below 0.5. Speed: fingerprint + index + query per page, both in this run.

    python benchmarks/neardup.py /usr/share/doc/postgresql-doc-15/html [/usr/share/doc/python3.11/html/library]
"""
from __future__ import annotations

import glob
import os
import random
import sys
import time

from datasketch import MinHash, MinHashLSH

from crawler.extract import extract_html
from crawler.simhash import SHINGLE_WORDS, _WORD, distance, simhash

BITS = 3
THRESHOLD = 0.7
PERM = 128


def shingles(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    return {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))} if words else set()


def minhash(sh: set[str]) -> MinHash:
    m = MinHash(num_perm=PERM, seed=1)
    m.update_batch([s.encode() for s in sh])
    return m


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def pages(dirs: list[str]) -> list[tuple[str, str]]:
    out = []
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "**", "*.html"), recursive=True)):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = extract_html(f.read(), "file://" + path).text
            if len(_WORD.findall(text)) >= 20:
                out.append((path, text))
    return out


def variant(text: str, rng: random.Random, replace_share: float = 0.0) -> str:
    words = text.split()
    if replace_share:
        for i in rng.sample(range(len(words)), max(1, int(len(words) * replace_share))):
            words[i] = "zqx" + str(rng.randrange(10 ** 6))
    else:
        words.insert(rng.randrange(len(words) + 1), "additionally")
    return " ".join(words)


def bucket(n: int) -> str:
    return "<100 words" if n < 100 else "100-300 words" if n < 300 else ">=300 words"


def main(dirs: list[str]) -> None:
    rng = random.Random(7)
    docs = pages(dirs)
    print(f"pages: {len(docs)} from {', '.join(dirs)}; load {open('/proc/loadavg').read().split()[:3]}")
    sh = [shingles(t) for _, t in docs]
    # speed: fingerprint every page, add it, query it (what the crawler does per new page)
    t = time.perf_counter()
    sims = [simhash(text) for _, text in docs]
    flagged_sim = set()
    for i, s in enumerate(sims):  # linear scan as a bound; the crawler uses an index over bands
        for j in range(i):
            if distance(s, sims[j]) <= BITS:
                flagged_sim.add((j, i))
    t_sim = time.perf_counter() - t
    t = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=PERM)
    mins = []
    flagged_min = set()
    for i, s in enumerate(sh):
        m = minhash(s)
        mins.append(m)
        for key in lsh.query(m):
            flagged_min.add((key, i))
        lsh.insert(i, m)
    t_min = time.perf_counter() - t
    print(f"speed over {len(docs)} pages: simhash {t_sim * 1000 / len(docs):.2f} ms/page (fingerprint + "
          f"linear scan), minhash-lsh {t_min * 1000 / len(docs):.2f} ms/page (fingerprint + query + insert)")
    for name, flagged in (("simhash<=3 bits", flagged_sim), (f"minhash-lsh J>={THRESHOLD}", flagged_min)):
        js = [jaccard(sh[a], sh[b]) for a, b in flagged]
        false = sum(1 for j in js if j < 0.5)
        print(f"{name}: flagged {len(flagged)} real pairs, false merges (exact J<0.5) {false}, "
              f"true near-dups (J>=0.8) {sum(1 for j in js if j >= 0.8)}")
    for label, share in (("one inserted word", 0.0), ("2% of words replaced", 0.02)):
        stats: dict = {}
        for (_, text), s0, m0, sim0 in zip(docs, sh, mins, sims):
            v = variant(text, rng, share)
            b = bucket(len(text.split()))
            row = stats.setdefault(b, [0, 0, 0])
            row[0] += 1
            row[1] += distance(simhash(v), sim0) > BITS
            est = minhash(shingles(v)).jaccard(m0)
            row[2] += est < THRESHOLD  # LSH retrieves it with high probability iff est >= threshold
        print(f"missed near-duplicates, {label}:")
        for b in ("<100 words", "100-300 words", ">=300 words"):
            if b in stats:
                n, ms, mm = stats[b]
                print(f"  {b:14s} pairs {n:5d}  simhash missed {ms:5d} ({ms / n:.1%})  minhash missed {mm:5d} ({mm / n:.1%})")


if __name__ == "__main__":
    main(sys.argv[1:] or ["/usr/share/doc/postgresql-doc-15/html"])
