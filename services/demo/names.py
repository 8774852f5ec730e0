"""Synthetic Russian full names: first names, patronymics and gendered surnames."""

from __future__ import annotations

import random
from dataclasses import dataclass

BOYS_NAMES = (
    "Александр", "Максим", "Михаил", "Артём", "Иван", "Дмитрий", "Даниил",
    "Кирилл", "Андрей", "Егор", "Никита", "Илья", "Алексей", "Матвей",
    "Тимофей", "Роман", "Владимир", "Ярослав", "Фёдор", "Георгий",
    "Константин", "Лев", "Марк", "Степан", "Сергей", "Николай", "Арсений",
    "Владислав", "Глеб", "Денис", "Захар", "Павел", "Тимур", "Богдан",
    "Всеволод", "Семён", "Макар", "Платон", "Савелий", "Мирон",
)  # fmt: skip

GIRLS_NAMES = (
    "Анастасия", "Мария", "Анна", "Виктория", "Екатерина", "Софья", "Алиса",
    "Дарья", "Полина", "Варвара", "Елизавета", "Ксения", "Александра",
    "Вероника", "Арина", "Василиса", "Милана", "Ульяна", "Валерия", "Кира",
    "Ева", "Таисия", "Алёна", "Вера", "Маргарита", "Диана", "Есения",
    "Злата", "Ольга", "Татьяна", "Юлия", "Мирослава", "Агата", "Яна",
    "Стефания", "Серафима", "Надежда", "Эвелина", "Алина", "Кристина",
)  # fmt: skip

# Names of the pupils' fathers and of the specialists' fathers (born 1950–1995).
FATHERS_NAMES = (
    "Александр", "Алексей", "Андрей", "Сергей", "Дмитрий", "Евгений", "Игорь",
    "Владимир", "Михаил", "Николай", "Олег", "Павел", "Роман", "Денис",
    "Иван", "Максим", "Юрий", "Виктор", "Константин", "Вадим", "Антон",
    "Артём", "Илья", "Никита", "Василий", "Анатолий", "Геннадий", "Виталий",
    "Валерий", "Григорий", "Пётр", "Лев", "Георгий", "Руслан", "Станислав",
    "Вячеслав", "Ярослав", "Кирилл", "Владислав", "Эдуард", "Борис", "Фёдор",
    "Леонид", "Аркадий", "Матвей", "Степан", "Тимофей", "Семён", "Егор",
    "Данила", "Кузьма", "Тимур", "Яков", "Савелий", "Арсений",
)  # fmt: skip

SURNAMES = (
    "Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов",
    "Михайлов", "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев",
    "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов",
    "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров",
    "Зайцев", "Соловьёв", "Борисов", "Яковлев", "Григорьев", "Романов",
    "Воробьёв", "Сергеев", "Кузьмин", "Фролов", "Александров", "Дмитриев",
    "Королёв", "Гусев", "Киселёв", "Ильин", "Максимов", "Поляков", "Сорокин",
    "Виноградов", "Ковалёв", "Белов", "Медведев", "Антонов", "Тарасов",
    "Жуков", "Баранов", "Филиппов", "Комаров", "Давыдов", "Беляев",
    "Герасимов", "Богданов", "Осипов", "Сидоров", "Матвеев", "Титов",
    "Марков", "Миронов", "Крылов", "Куликов", "Карпов", "Власов", "Мельников",
    "Денисов", "Гаврилов", "Тихонов", "Казаков", "Афанасьев", "Данилов",
    "Савельев", "Тимофеев", "Фомин", "Чернов", "Абрамов", "Мартынов",
    "Ефимов", "Щербаков", "Назаров", "Калинин", "Исаев", "Чернышёв", "Быков",
    "Маслов", "Родионов", "Коновалов", "Лазарев", "Воронин", "Климов",
    "Филатов", "Пономарёв", "Голубев", "Кудрявцев", "Прохоров", "Наумов",
    "Журавлёв", "Овчинников", "Трофимов", "Леонов", "Соболев", "Ермаков",
    "Колесников", "Гончаров", "Емельянов", "Никифоров", "Грачёв", "Котов",
    "Гришин", "Ефремов", "Архипов", "Громов", "Кириллов", "Малышев", "Панов",
    "Моисеев", "Румянцев", "Акимов", "Кондратьев", "Бирюков", "Горбунов",
    "Скворцов", "Белоусов", "Нестеров", "Симонов", "Харитонов", "Цветков",
    "Островский", "Покровский", "Вишневский", "Троицкий", "Садовский",
    "Толстой", "Лановой", "Черных", "Белых", "Седых", "Коваленко",
    "Шевченко", "Бондаренко", "Ткаченко", "Лысенко",
)  # fmt: skip

# Fathers' names whose patronymics follow no general rule.
_IRREGULAR_PATRONYMICS = {
    "Лев": ("Львович", "Львовна"),
    "Павел": ("Павлович", "Павловна"),
    "Пётр": ("Петрович", "Петровна"),
    "Михаил": ("Михайлович", "Михайловна"),
    "Илья": ("Ильич", "Ильинична"),
    "Никита": ("Никитич", "Никитична"),
    "Кузьма": ("Кузьмич", "Кузьминична"),
    "Фома": ("Фомич", "Фоминична"),
    "Лука": ("Лукич", "Лукинична"),
    "Данила": ("Данилович", "Даниловна"),
    "Яков": ("Яковлевич", "Яковлевна"),
}

_VOWELS = set("аеёиоуыэюя")


class NameFormError(ValueError):
    """A name has a form that the patronymic or surname rules do not cover."""


def patronymic(father: str, *, female: bool) -> str:
    """Derive the patronymic of a son or daughter from the father's first name."""
    if father in _IRREGULAR_PATRONYMICS:
        male_form, female_form = _IRREGULAR_PATRONYMICS[father]
        return female_form if female else male_form
    suffix_m, suffix_f = "ович", "овна"
    stem = father
    if father.endswith("ий"):
        stem = father[:-2]
        # After a consonant cluster the «и» stays (Дмитрий → Дмитриевич), after a
        # single consonant it becomes a soft sign (Юрий → Юрьевич).
        soft = len(stem) >= 2 and stem[-2].lower() in _VOWELS
        stem += "ь" if soft else "и"
        suffix_m, suffix_f = "евич", "евна"
    elif father.endswith(("ей", "ай")):
        stem = father[:-1]
        suffix_m, suffix_f = "евич", "евна"
    elif father.endswith("ь"):
        stem = father[:-1]
        suffix_m, suffix_f = "евич", "евна"
    elif father[-1].lower() in _VOWELS:
        raise NameFormError(f"no patronymic rule for the name {father!r}")
    return stem + (suffix_f if female else suffix_m)


def feminine_surname(surname: str) -> str:
    """Return the form of a surname that a woman or girl bears."""
    if surname.endswith(("ов", "ев", "ёв", "ин", "ын")):
        return surname + "а"
    if surname.endswith(("ский", "цкий")):
        return surname[:-2] + "ая"
    if surname.endswith("ой"):
        return surname[:-2] + "ая"
    if surname.endswith(("ых", "их", "ко", "енко")):
        return surname
    raise NameFormError(f"no feminine form rule for the surname {surname!r}")


@dataclass(frozen=True)
class FullName:
    """A person's surname, first name and patronymic as they are written."""

    surname: str
    name: str
    patronymic: str
    female: bool

    def __str__(self) -> str:
        return f"{self.surname} {self.name} {self.patronymic}"


def random_full_name(
    rng: random.Random,
    *,
    female: bool,
    first_names: tuple[str, ...] | None = None,
) -> FullName:
    """Draw a full name of the given sex from the lists of common names."""
    pool = first_names or (GIRLS_NAMES if female else BOYS_NAMES)
    surname = rng.choice(SURNAMES)
    return FullName(
        surname=feminine_surname(surname) if female else surname,
        name=rng.choice(pool),
        patronymic=patronymic(rng.choice(FATHERS_NAMES), female=female),
        female=female,
    )
