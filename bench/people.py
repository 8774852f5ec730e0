"""Realistic, unique pupils and programmes for the benchmark workloads."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import date, timedelta

SURNAMES = (
    "Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов",
    "Михайлов", "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев",
    "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов", "Николаев", "Орлов",
    "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Соловьёв", "Борисов",
    "Яковлев", "Григорьев", "Романов", "Воробьёв", "Сергеев", "Кузьмин", "Фролов",
    "Александров", "Дмитриев", "Королёв", "Гусев", "Киселёв",
)  # fmt: skip
BOYS = (
    "Александр", "Дмитрий", "Максим", "Артём", "Иван", "Михаил", "Кирилл",
    "Матвей", "Егор", "Никита", "Тимофей", "Роман", "Даниил", "Андрей", "Илья",
    "Марк", "Лев", "Фёдор", "Степан", "Алексей",
)  # fmt: skip
GIRLS = (
    "Анна", "Мария", "Софья", "Алиса", "Виктория", "Полина", "Анастасия",
    "Екатерина", "Дарья", "Варвара", "Ксения", "Вероника", "Василиса",
    "Елизавета", "Милана", "Ульяна", "Таисия", "Ева", "Арина", "Валерия",
)  # fmt: skip
# Patronymics of a son and of a daughter of the same father.
PATRONYMICS = (
    ("Александрович", "Александровна"), ("Дмитриевич", "Дмитриевна"),
    ("Сергеевич", "Сергеевна"), ("Андреевич", "Андреевна"),
    ("Алексеевич", "Алексеевна"), ("Игоревич", "Игоревна"),
    ("Владимирович", "Владимировна"), ("Олегович", "Олеговна"),
    ("Николаевич", "Николаевна"), ("Викторович", "Викторовна"),
    ("Евгеньевич", "Евгеньевна"), ("Павлович", "Павловна"),
    ("Михайлович", "Михайловна"), ("Иванович", "Ивановна"),
    ("Юрьевич", "Юрьевна"),
)  # fmt: skip

PROGRAMME_TITLES = (
    "Развитие речи и коммуникации",
    "Школа общения",
    "Учимся учиться",
    "Коррекция эмоционально-волевой сферы",
    "Скоро в школу",
    "Развитие познавательных процессов",
    "Профилактика школьной тревожности",
    "Сенсорная интеграция",
    "Логопедическая коррекция",
    "Социальная адаптация подростков",
    "Развитие мелкой моторики",
    "Мой выбор: профориентация",
)
CRITERIA = (
    ("attention", "Внимание"),
    ("memory", "Память"),
    ("speech", "Речь"),
    ("thinking", "Мышление"),
    ("motor", "Моторика"),
    ("contact", "Контакт"),
)
SPECIALISTS = (
    ("Орлова Анна Викторовна", "педагог-психолог"),
    ("Смирнова Елена Петровна", "учитель-логопед"),
    ("Кузнецова Ольга Игоревна", "учитель-дефектолог"),
    ("Белов Сергей Андреевич", "социальный педагог"),
)
SESSION_TOPICS = (
    "Знакомство, правила группы",
    "Развитие слухового внимания",
    "Эмоции и их выражение",
    "Игры на развитие памяти",
    "Работа со звуками",
    "Конструирование по образцу",
    "Развитие произвольности",
    "Сотрудничество в паре",
    "Итоговое занятие",
)
ORIENTATION = "социально-гуманитарная"


@dataclass(frozen=True)
class PupilName:
    """A pupil's full name and birth date."""

    surname: str
    name: str
    patronymic: str
    birth_date: date


class PupilNames:
    """Draws pupils whose normalised full name and birth date never repeat.

    Thread-safe, so that client threads of one benchmark share it. Drawers
    in other processes stay apart by `partition` (index, count): each one
    gives only birth dates whose ordinal is the index modulo the count.
    """

    def __init__(self, rng: random.Random, partition: tuple[int, int] = (0, 1)) -> None:
        index, count = partition
        if not 0 <= index < count:
            raise ValueError(f"partition index {index} is not in [0, {count})")
        self._rng = rng
        self._partition = partition
        self._used: set[tuple[str, date]] = set()
        self._lock = threading.Lock()

    def draw(self, born_between: tuple[date, date]) -> PupilName:
        """Return a pupil born in the range (inclusive) not drawn before."""
        first, last = born_between
        with self._lock:
            while True:
                candidate = self._candidate(first, (last - first).days)
                key = (_identity_key(candidate), candidate.birth_date)
                if key not in self._used:
                    self._used.add(key)
                    return candidate

    def _candidate(self, first: date, span_days: int) -> PupilName:
        rng = self._rng
        girl = rng.random() < 0.5
        surname = rng.choice(SURNAMES)
        son, daughter = rng.choice(PATRONYMICS)
        return PupilName(
            surname=surname + "а" if girl else surname,
            name=rng.choice(GIRLS if girl else BOYS),
            patronymic=daughter if girl else son,
            birth_date=self._birth_date(first, span_days),
        )

    def _birth_date(self, first: date, span_days: int) -> date:
        index, count = self._partition
        if span_days < count:
            raise ValueError(f"a range of {span_days + 1} days is too short to split")
        day = first + timedelta(days=self._rng.randint(0, span_days - count))
        return day + timedelta(days=(index - day.toordinal()) % count)


def _identity_key(person: PupilName) -> str:
    full_name = f"{person.surname} {person.name} {person.patronymic}"
    return full_name.casefold().replace("ё", "е")


def programme_criteria(index: int) -> list[dict[str, object]]:
    """Return three attestation criteria of the `index`-th programme, 10 points each."""
    chosen = [CRITERIA[(index + shift) % len(CRITERIA)] for shift in range(3)]
    return [{"code": code, "title": title, "max_score": 10} for code, title in chosen]


def last_finished_year_start(today: date) -> int:
    """Return the first calendar year of the last academic year that has ended."""
    return today.year - 1 if today.month >= 6 else today.year - 2
