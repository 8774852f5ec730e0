"""Normalisation of names for duplicate detection and ordering."""

from __future__ import annotations

import unicodedata


def normalise_name(text: str) -> str:
    """Fold a name for comparison: NFC, case, ё as е, single inner spaces."""
    folded = unicodedata.normalize("NFC", text).casefold().replace("ё", "е")
    return " ".join(folded.split())


def normalised_full_name(surname: str, name: str, patronymic: str | None) -> str:
    """Return the comparison key of a full name, surname first."""
    parts = [surname, name, patronymic or ""]
    return " ".join(part for part in map(normalise_name, parts) if part)
