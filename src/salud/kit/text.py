"""Text normalization shared by CURP rules and name search."""

from __future__ import annotations

import unicodedata

_KEEP_N_TILDE = str.maketrans({"Ñ": "\0"})


def fold(text: str) -> str:
    """Uppercase without diacritics, keeping Ñ (RENAPO treats it apart), spaces collapsed."""
    upper = text.strip().upper().translate(_KEEP_N_TILDE)
    decomposed = unicodedata.normalize("NFKD", upper)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.replace("\0", "Ñ").split())


def search_key(text: str) -> str:
    """The form names are compared in: folded, Ñ as N, only letters and single spaces."""
    folded = fold(text).replace("Ñ", "N")
    letters = "".join(c if c.isalpha() or c == " " else " " for c in folded)
    return " ".join(letters.split())
