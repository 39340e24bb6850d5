"""A deterministic stand-in for an embedding model: hashed bag of words, unit length.

A real application calls its model here; the example needs no weights and gives the same vector
for the same text on every machine, so its tests can search by a word.
"""

from __future__ import annotations

import hashlib
import math
import re

_WORD = re.compile(r"[a-z0-9]+")


def embed(text: str, dimension: int) -> list[float]:
    """``dimension`` floats: each word adds 1 to the slot its hash picks; scaled to length 1."""
    vector = [0.0] * dimension
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest, "big") % dimension] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector
