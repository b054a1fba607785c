"""SimHash fingerprints of page text, for near-duplicate detection.

A fingerprint is 64 bits over the set of word 3-shingles (each distinct shingle counts once,
so repeated table rows cannot dominate); texts sharing most shingles differ in few bits.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+")
_CHUNK = 65536  # shingles per numpy batch, bounding memory on huge pages


def simhash(text: str) -> int:
    """The SimHash of `text` as a signed 64-bit integer (0 for text without words)."""
    words = _WORD.findall(text.lower())
    shingles = list({" ".join(words[i:i + SHINGLE_WORDS])
                     for i in range(max(1, len(words) - SHINGLE_WORDS + 1))} if words else ())
    if not shingles:
        return 0
    ones = np.zeros(64, dtype=np.int64)
    for start in range(0, len(shingles), _CHUNK):
        digests = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest()
                           for s in shingles[start:start + _CHUNK])
        bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(-1, 8), axis=1, bitorder="little")
        ones += bits.sum(axis=0, dtype=np.int64)
    value = sum(1 << int(i) for i in np.flatnonzero(2 * ones > len(shingles)))
    return value - (1 << 64) if value >= 1 << 63 else value


def distance(a: int, b: int) -> int:
    """Hamming distance between two fingerprints."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
