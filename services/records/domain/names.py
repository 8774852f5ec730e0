"""Normalisation of names for duplicate detection and ordering."""

from __future__ import annotations

import re
import unicodedata

# Invisible format characters (Unicode category Cf: zero-width spaces and
# joiners, bidi marks and overrides, the BOM) and control characters (Cc).
# The API trims them from the ends of a name and rejects them inside it, so
# the normalised name drops them wherever they are.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc"})
# U+2212 MINUS SIGN is a math symbol (Sm) that looks like a hyphen.
MINUS_SIGN = "\u2212"
# Cyrillic е and и with a grave accent have precomposed forms, so NFC keeps
# the stress mark inside the letter. Neither is a letter of its own in
# Russian, Bulgarian or Macedonian orthography.
STRESSED_CYRILLIC = str.maketrans({"ѐ": "е", "ѝ": "и"})
# A run of hyphens with optional single spaces around and between them, as
# left after the dash variants are folded and white space is collapsed.
_HYPHEN_RUN = re.compile(r" ?-(?: ?-)* ?")


def is_invisible(char: str) -> bool:
    """Return whether `char` is a format or control character."""
    return unicodedata.category(char) in INVISIBLE_CATEGORIES


def is_dash(char: str) -> bool:
    """Return whether `char` is a hyphen, a dash or the minus sign.

    These are the dash punctuation characters (Unicode category Pd: the
    hyphen-minus, U+2010 hyphen, U+2011 non-breaking hyphen, en and em dashes
    and others) and U+2212 minus sign.
    """
    return char == MINUS_SIGN or unicodedata.category(char) == "Pd"


def is_loose_combining_mark(char: str) -> bool:
    """Return whether `char` is a generic combining diacritic, such as a stress mark.

    These are the nonspacing and enclosing marks (Mn, Me) whose Unicode name
    starts with "COMBINING": U+0301 combining acute accent and its kin. The
    vowel signs and points of other scripts have other names and are kept.
    """
    return unicodedata.category(char) in ("Mn", "Me") and unicodedata.name(
        char, ""
    ).startswith("COMBINING ")


def normalise_name(text: str) -> str:
    """Fold a name for comparison: NFC, case, ё as е, single inner spaces, and
    no format or control characters.

    For a name without format or control characters, dropping them changes
    nothing, so identity ids and sort keys stored earlier stay valid. Control
    characters that are white space (tab, line feed) separate words. Group
    journal keys use this form; a person's name is matched with
    `normalise_person_name`.
    """
    composed = unicodedata.normalize("NFC", text)
    visible = "".join(
        char for char in composed if char.isspace() or not is_invisible(char)
    )
    # Dropping a character can bring a letter and a combining mark together.
    folded = unicodedata.normalize("NFC", visible).casefold().replace("ё", "е")
    return " ".join(folded.split())


def normalise_person_name(text: str) -> str:
    """Fold a surname, first name or patronymic for duplicate detection.

    On top of `normalise_name`, every dash variant becomes one hyphen-minus
    with no spaces around it. Combining marks that NFC could not join to a
    letter (stress marks, as in "Ива\u0301нов") are dropped. ѐ and ѝ become
    е and и. Other letters that NFC composes keep their marks, so й
    stays apart from и, and ё is already folded to е. A name whose dashes are
    all single hyphen-minus characters with no space next to them, and which
    has none of these marks, folds exactly as `normalise_name` does, so its
    identity id and sort key stay the same.
    """
    folded = normalise_name(text).translate(STRESSED_CYRILLIC)
    if not any(is_dash(char) or is_loose_combining_mark(char) for char in folded):
        return folded
    kept = "".join(
        "-" if is_dash(char) else char
        for char in folded
        if not is_loose_combining_mark(char)
    )
    # Without the marks, NFC may join a letter with a later mark it blocked.
    recomposed = unicodedata.normalize("NFC", kept)
    return _HYPHEN_RUN.sub("-", " ".join(recomposed.split()))


def normalised_full_name(surname: str, name: str, patronymic: str | None) -> str:
    """Return the comparison key of a full name, surname first."""
    parts = [surname, name, patronymic or ""]
    return " ".join(part for part in map(normalise_person_name, parts) if part)
