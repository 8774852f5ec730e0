"""Normalisation of names for duplicate detection and ordering."""

from __future__ import annotations

import unicodedata

# Invisible format characters (Unicode category Cf: zero-width spaces and
# joiners, bidi marks and overrides, the BOM) and control characters (Cc).
# The API trims them from the ends of a name and rejects them inside it, so
# the normalised name drops them wherever they are.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc"})


def is_invisible(char: str) -> bool:
    """Return whether `char` is a format or control character."""
    return unicodedata.category(char) in INVISIBLE_CATEGORIES


def normalise_name(text: str) -> str:
    """Fold a name for comparison: NFC, case, ё as е, single inner spaces, and
    no format or control characters.

    For a name without format or control characters, dropping them changes
    nothing, so identity ids and sort keys stored earlier stay valid. Control
    characters that are white space (tab, line feed) separate words.
    """
    composed = unicodedata.normalize("NFC", text)
    visible = "".join(
        char for char in composed if char.isspace() or not is_invisible(char)
    )
    # Dropping a character can bring a letter and a combining mark together.
    folded = unicodedata.normalize("NFC", visible).casefold().replace("ё", "е")
    return " ".join(folded.split())


def normalised_full_name(surname: str, name: str, patronymic: str | None) -> str:
    """Return the comparison key of a full name, surname first."""
    parts = [surname, name, patronymic or ""]
    return " ".join(part for part in map(normalise_name, parts) if part)
