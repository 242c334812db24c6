"""Text normalization shared by CURP rules and name search."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_KEEP_N_TILDE = str.maketrans({"Ñ": "\0"})


def fold(text: str) -> str:
    """Uppercase without diacritics, keeping Ñ (RENAPO treats it apart), spaces collapsed."""
    upper = text.strip().upper().translate(_KEEP_N_TILDE)
    decomposed = unicodedata.normalize("NFKD", upper)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.replace("\0", "Ñ").split())


@lru_cache(maxsize=65536)
def search_key(text: str) -> str:
    """The form names are compared in: folded, Ñ as N, only letters and single spaces.

    Cached: names repeat a great deal (a bulk import sees the same surnames again and again).
    """
    folded = fold(text).replace("Ñ", "N")
    letters = "".join(c if c.isalpha() or c == " " else " " for c in folded)
    return " ".join(letters.split())
