"""Tests of the demo's Russian name forms: patronymics and feminine surnames."""

from __future__ import annotations

import random

import pytest

from services.demo.names import (
    BOYS_NAMES,
    FATHERS_NAMES,
    GIRLS_NAMES,
    SURNAMES,
    NameFormError,
    feminine_surname,
    patronymic,
    random_full_name,
)

PATRONYMICS = [
    ("Иван", "Иванович", "Ивановна"),
    ("Сергей", "Сергеевич", "Сергеевна"),
    ("Николай", "Николаевич", "Николаевна"),
    ("Дмитрий", "Дмитриевич", "Дмитриевна"),
    ("Георгий", "Георгиевич", "Георгиевна"),
    ("Юрий", "Юрьевич", "Юрьевна"),
    ("Василий", "Васильевич", "Васильевна"),
    ("Геннадий", "Геннадьевич", "Геннадьевна"),
    ("Игорь", "Игоревич", "Игоревна"),
    ("Артём", "Артёмович", "Артёмовна"),
    ("Фёдор", "Фёдорович", "Фёдоровна"),
    ("Лев", "Львович", "Львовна"),
    ("Павел", "Павлович", "Павловна"),
    ("Пётр", "Петрович", "Петровна"),
    ("Михаил", "Михайлович", "Михайловна"),
    ("Илья", "Ильич", "Ильинична"),
    ("Никита", "Никитич", "Никитична"),
    ("Кузьма", "Кузьмич", "Кузьминична"),
    ("Яков", "Яковлевич", "Яковлевна"),
]

SURNAME_FORMS = [
    ("Иванов", "Иванова"),
    ("Соловьёв", "Соловьёва"),
    ("Васильев", "Васильева"),
    ("Никитин", "Никитина"),
    ("Островский", "Островская"),
    ("Троицкий", "Троицкая"),
    ("Толстой", "Толстая"),
    ("Черных", "Черных"),
    ("Коваленко", "Коваленко"),
]


@pytest.mark.parametrize(("father", "son", "daughter"), PATRONYMICS)
def test_patronymic_of_son_and_daughter(father: str, son: str, daughter: str) -> None:
    assert patronymic(father, female=False) == son
    assert patronymic(father, female=True) == daughter


@pytest.mark.parametrize(("male", "female"), SURNAME_FORMS)
def test_feminine_surname_forms(male: str, female: str) -> None:
    assert feminine_surname(male) == female


def test_every_listed_name_has_forms() -> None:
    for father in FATHERS_NAMES:
        assert patronymic(father, female=False).endswith(("вич", "ич"))
        assert patronymic(father, female=True).endswith(("вна", "чна"))
    for surname in SURNAMES:
        assert feminine_surname(surname)


def test_unknown_forms_are_rejected() -> None:
    with pytest.raises(NameFormError):
        patronymic("Савва", female=False)
    with pytest.raises(NameFormError):
        feminine_surname("Дюма")


def test_random_names_follow_the_sex() -> None:
    rng = random.Random(1)
    for _ in range(200):
        girl = random_full_name(rng, female=True)
        boy = random_full_name(rng, female=False)
        assert girl.name in GIRLS_NAMES
        assert girl.patronymic.endswith(("вна", "чна"))
        assert boy.name in BOYS_NAMES
        assert boy.patronymic.endswith(("вич", "ич"))
        assert boy.surname in SURNAMES
