"""Normalisation of full names, the key of duplicate detection and ordering."""

from __future__ import annotations

import unicodedata
from datetime import date
from uuid import NAMESPACE_URL, uuid5

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from services.records.domain.names import (
    is_dash,
    is_loose_combining_mark,
    normalise_name,
    normalise_person_name,
    normalised_full_name,
)
from services.records.domain.pupils import PupilIdentity

BIRTH = date(2015, 4, 3)
SECRET = bytes(range(32))


def identity(surname, name, patronymic, birth_date=BIRTH, secret=SECRET):
    return PupilIdentity.id_for(secret, surname, name, patronymic, birth_date)


def test_decomposed_letters_equal_composed():
    decomposed = unicodedata.normalize("NFD", "Йошкина")

    assert decomposed != "Йошкина"
    assert normalise_name(decomposed) == normalise_name("Йошкина")


def test_case_ignored():
    assert normalise_name("ПЕТРОВА") == normalise_name("петрова")


def test_yo_folds_to_ye():
    assert normalise_name("Ёлкин") == normalise_name("елкин")
    assert normalise_name("Семёнова") == normalise_name("СЕМЕНОВА")


def test_decomposed_yo_folds_to_ye():
    decomposed = unicodedata.normalize("NFD", "Семёнова")

    assert normalise_name(decomposed) == normalise_name("Семенова")


def test_surrounding_and_repeated_spaces_ignored():
    assert normalise_name("  Анна   Мария\t") == normalise_name("Анна Мария")


def test_inner_space_kept():
    assert normalise_name("Анна Мария") != normalise_name("АннаМария")


def test_missing_patronymic_equals_empty():
    assert normalised_full_name("Иванов", "Пётр", None) == normalised_full_name(
        "Иванов", "Пётр", "  "
    )


def test_full_name_puts_surname_first():
    assert normalised_full_name("Иванов", "Пётр", "Сергеевич") == (
        "иванов петр сергеевич"
    )


@pytest.mark.parametrize(
    ("surname", "name", "patronymic"),
    [
        ("ИВАНОВ", "ПЁТР", "СЕРГЕЕВИЧ"),
        (" иванов ", "петр", "сергеевич"),
        (unicodedata.normalize("NFD", "Иванов"), "Пётр", "Сергеевич  "),
        ("Иванов", "Петр", "Сергеевич"),
    ],
)
def test_identity_of_same_pupil_matches(surname, name, patronymic):
    assert identity(surname, name, patronymic) == identity(
        "Иванов", "Пётр", "Сергеевич"
    )


def test_identity_differs_by_birth_date():
    assert identity("Иванов", "Пётр", None) != identity(
        "Иванов", "Пётр", None, date(2015, 4, 4)
    )


def test_identity_differs_by_patronymic():
    assert identity("Иванов", "Пётр", None) != identity("Иванов", "Пётр", "Ильич")


def test_identity_depends_on_secret():
    other = bytes(32)

    assert identity("Иванов", "Пётр", None) != identity(
        "Иванов", "Пётр", None, secret=other
    )


def test_identity_is_not_plain_name_hash():
    plain = uuid5(NAMESPACE_URL, f"/pupil-identities/{BIRTH}/иванов петр")

    assert identity("Иванов", "Пётр", None) != plain


LETTERS = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяabcdefghijklmnopqrstuvwxyz-"
words = st.lists(
    st.text(alphabet=LETTERS, min_size=1, max_size=8), min_size=1, max_size=3
)


def respell(parts, data):
    """Return the words with random case, spacing and ё/е spelling."""
    spaced = []
    for part in parts:
        letters = []
        for letter in part:
            if letter in "её" and data.draw(st.booleans()):
                letter = "ё" if letter == "е" else "е"
            if data.draw(st.booleans()):
                letter = letter.upper()
            letters.append(letter)
        spaced.append("".join(letters))
    gap = data.draw(st.sampled_from([" ", "  ", "\t", " \u00a0"]))
    edge = data.draw(st.sampled_from(["", " ", "\n"]))
    return edge + gap.join(spaced) + edge


@given(words, st.data())
def test_respelled_name_normalises_alike(parts, data):
    original = " ".join(parts)
    variant = respell(parts, data)

    assert normalise_name(variant) == normalise_name(original)


@given(words, st.data())
def test_respelled_name_keeps_identity(parts, data):
    variant = respell(parts, data)
    normal_form = unicodedata.normalize(
        data.draw(st.sampled_from(["NFC", "NFD"])), variant
    )

    assert identity(normal_form, "Анна", None) == identity(" ".join(parts), "анна", "")


@pytest.mark.parametrize(
    "variant",
    [
        "Ёлки\u200bна",
        "\u202eЁлкина",
        "Ёлкина\u202c",
        "Ёл\u00adкина",
        "Ёлки\u2066на\u2069",
    ],
)
def test_format_characters_ignored(variant):
    assert normalise_name(variant) == normalise_name("Ёлкина")


def test_control_characters_ignored():
    assert normalise_name("Ёлки\x00на\x7f") == normalise_name("Ёлкина")


def test_dropped_format_character_joins_combining_mark():
    assert normalise_name("Е\u200b\u0308лкина") == normalise_name("Ёлкина")


def test_only_format_characters_normalise_to_blank():
    assert normalise_name("\u200b\u200d\ufeff") == ""
    assert normalised_full_name("Иванов", "Пётр", "\u200b") == "иванов петр"


def test_identity_ignores_format_characters():
    assert identity("Ёлки\u200bна", "Анна", None) == identity("Елкина", "Анна", None)


# Identity ids computed before format characters were dropped and before
# dashes and stress marks were folded: they must stay the same for names
# without such characters.
KNOWN_IDENTITIES = [
    (("Иванов", "Пётр", "Сергеевич"), "0d02064c-bad4-4d6b-bf94-4d2e66b79acf"),
    (("Ёлкина", "Анна", None), "7500909a-a090-4e78-ba2b-71bba01e11b8"),
    (("Петрова-Водкина", "Анна", None), "715e05b4-8aa7-4b95-aa75-a899e75fca96"),
    (("Иванов", "Йосиф", "Андреевич"), "6c29d21f-4178-4be8-a3bf-0f810dc70aa7"),
]


@pytest.mark.parametrize(("parts", "expected"), KNOWN_IDENTITIES)
def test_identity_ids_stay_stable(parts, expected):
    assert str(identity(*parts)) == expected


@given(st.text())
def test_visible_names_fold_as_before(text):
    assume(not any(unicodedata.category(char) in ("Cf", "Cc") for char in text))
    earlier = unicodedata.normalize("NFC", text).casefold().replace("ё", "е")

    assert normalise_name(text) == " ".join(earlier.split())


@given(st.text())
def test_plain_person_names_fold_as_before(text):
    folded = normalise_name(text)
    assume(not any(is_dash(char) or is_loose_combining_mark(char) for char in folded))
    assume("ѐ" not in folded and "ѝ" not in folded)

    assert normalise_person_name(text) == folded


@given(st.lists(st.text(alphabet=LETTERS[:-1], min_size=1, max_size=8), max_size=4))
def test_hyphenated_names_fold_as_before(words):
    text = "-".join(words)

    assert normalise_person_name(text) == normalise_name(text)


@given(st.text())
def test_invisible_characters_never_change_key(text):
    visible = "".join(
        char
        for char in text
        if char.isspace() or unicodedata.category(char) not in ("Cf", "Cc")
    )

    assert normalise_name(text) == normalise_name(visible)


@given(st.text())
def test_normalisation_is_idempotent(text):
    once = normalise_name(text)

    assert normalise_name(once) == once


@given(st.text())
def test_person_name_normalisation_is_idempotent(text):
    once = normalise_person_name(text)

    assert normalise_person_name(once) == once


# Dashes and stress marks

HYPHENATED = "Петрова-Водкина"


@pytest.mark.parametrize(
    "variant",
    [
        "Петрова\u2010Водкина",
        "Петрова\u2011Водкина",
        "Петрова\u2012Водкина",
        "Петрова\u2013Водкина",
        "Петрова\u2014Водкина",
        "Петрова\u2015Водкина",
        "Петрова\u2212Водкина",
        "Петрова\ufe63Водкина",
        "Петрова\uff0dВодкина",
        "Петрова - Водкина",
        "Петрова -Водкина",
        "Петрова-  Водкина",
        "Петрова \u2013 Водкина",
        "Петрова\u00a0\u2014\u00a0Водкина",
        "Петрова--Водкина",
        "Петрова - - Водкина",
    ],
)
def test_dash_variants_match_hyphen(variant):
    assert normalise_person_name(variant) == normalise_person_name(HYPHENATED)


def test_folded_dash_is_hyphen_minus():
    assert normalise_person_name("Петрова \u2013 Водкина") == "петрова-водкина"


def test_hyphen_differs_from_space_and_nothing():
    hyphenated = normalise_person_name(HYPHENATED)

    assert normalise_person_name("Петрова Водкина") != hyphenated
    assert normalise_person_name("ПетроваВодкина") != hyphenated


@pytest.mark.parametrize(
    ("stressed", "plain"),
    [
        ("Ива\u0301нов", "Иванов"),
        ("А\u0301нна", "Анна"),
        ("Анна\u0301", "Анна"),
        ("Серге\u0300евич", "Сергеевич"),
        ("\u0400лкина", "Елкина"),
        ("Мари\u0300я", "Мария"),
        ("Ива\u0301\u0301нов", "Иванов"),
        ("Семё\u0301нова", "Семенова"),
        (unicodedata.normalize("NFD", "Семё\u0301нова"), "Семенова"),
    ],
)
def test_stress_marks_ignored(stressed, plain):
    assert normalise_person_name(stressed) == normalise_person_name(plain)


@pytest.mark.parametrize(
    ("with_breve", "without"),
    [
        ("Йошкина", "Иошкина"),
        (unicodedata.normalize("NFD", "Йошкина"), "Иошкина"),
        ("Андре\u0301й", "Андреи"),
    ],
)
def test_short_i_stays_distinct(with_breve, without):
    assert normalise_person_name(with_breve) != normalise_person_name(without)


def test_short_i_with_stress_mark_matches_short_i():
    assert normalise_person_name("Андре\u0301й") == normalise_person_name("Андрей")
    assert normalise_person_name("Йо\u0301шкина") == normalise_person_name("Йошкина")


def test_macedonian_letters_with_acute_kept():
    assert normalise_person_name("\u0453") != normalise_person_name("\u0433")
    assert normalise_person_name("\u045c") != normalise_person_name("\u043a")


def test_precomposed_latin_letters_keep_accents():
    assert normalise_person_name("Müller") != normalise_person_name("Muller")
    assert normalise_person_name("José") != normalise_person_name("Jose")
    assert normalise_person_name("Mu\u0308ller") == normalise_person_name("Müller")


def test_vowel_signs_of_other_scripts_kept():
    assert normalise_person_name("\u0915\u093f") != normalise_person_name("\u0915")


def test_full_name_folds_dashes_and_stress_marks():
    assert normalised_full_name("Петрова \u2013 Водкина", "А\u0301нна", None) == (
        "петрова-водкина анна"
    )


@pytest.mark.parametrize(
    ("surname", "name"),
    [
        ("Петрова\u2010Водкина", "Анна"),
        ("Петрова\u2013Водкина", "Анна"),
        ("Петрова - Водкина", "Анна"),
        ("Петрова-Водкина", "А\u0301нна"),
    ],
)
def test_identity_ignores_dashes_and_stress_marks(surname, name):
    assert identity(surname, name, None) == identity("Петрова-Водкина", "Анна", None)
