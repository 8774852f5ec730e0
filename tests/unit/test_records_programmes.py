"""Programmes: criteria, score checks and the exact decimal level rule."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.records.domain.errors import InvalidFieldError
from services.records.domain.programmes import Programme, ProgrammeCode
from tests.records_helpers import CRITERIA, new_programme, order, scores

pytestmark = pytest.mark.usefixtures("principal")


def test_programme_keeps_thresholds_as_decimal_text():
    programme = new_programme(high=Decimal("0.56"), medium=Decimal("0.3"))

    assert programme.levels == {"high": "0.56", "medium": "0.3"}
    assert programme.max_total == 25


@pytest.mark.parametrize(
    ("high", "medium"),
    [("0.5", "0.5"), ("0.4", "0.5"), ("1.01", "0.5"), ("0.5", "-0.01")],
)
def test_programme_with_invalid_thresholds_rejected(high, medium):
    with pytest.raises(InvalidFieldError) as raised:
        new_programme(high=Decimal(high), medium=Decimal(medium))

    assert set(raised.value.errors) == {"levels"}


def test_programme_with_extreme_thresholds_allowed():
    programme = new_programme(high=Decimal(1), medium=Decimal(0))

    assert programme.grade(scores(10, 10, 5)) == (25, "high")
    assert programme.grade(scores(0, 0, 0)) == (0, "medium")


def test_programme_with_repeated_criterion_rejected():
    criteria = [*CRITERIA, {"code": "speech", "title": "Речь-2", "max_score": 3}]

    with pytest.raises(InvalidFieldError) as raised:
        new_programme(criteria=criteria)

    assert set(raised.value.errors) == {"criteria"}


def test_programme_code_claim_ignores_case_and_spaces():
    assert ProgrammeCode.id_for("крз-1") == ProgrammeCode.id_for(" КРЗ-1 ")
    assert ProgrammeCode.id_for("КРЗ  1") == ProgrammeCode.id_for("крз 1")
    assert ProgrammeCode.id_for("КРЗ-1") != ProgrammeCode.id_for("КРЗ-2")


# Scores


def test_scores_at_bounds_accepted():
    programme = new_programme()

    programme.check_scores(scores(0, 0, 0))
    programme.check_scores(scores(10, 10, 5))


def test_score_above_maximum_rejected():
    programme = new_programme()

    with pytest.raises(InvalidFieldError) as raised:
        programme.check_scores(scores(10, 10, 6))

    assert raised.value.errors == {"scores.speech": ["must be between 0 and 5"]}


def test_negative_score_rejected():
    programme = new_programme()

    with pytest.raises(InvalidFieldError) as raised:
        programme.check_scores(scores(-1, 10, 5))

    assert set(raised.value.errors) == {"scores.attention"}


def test_missing_criterion_rejected():
    programme = new_programme()

    with pytest.raises(InvalidFieldError) as raised:
        programme.check_scores({"attention": 3, "memory": 3})

    assert set(raised.value.errors) == {"scores.speech"}


def test_unknown_criterion_rejected():
    programme = new_programme()

    with pytest.raises(InvalidFieldError) as raised:
        programme.check_scores({**scores(), "logic": 2})

    assert set(raised.value.errors) == {"scores.logic"}


def test_every_wrong_score_reported():
    programme = new_programme()

    with pytest.raises(InvalidFieldError) as raised:
        programme.check_scores({"attention": 11, "logic": 1, "speech": 2})

    assert set(raised.value.errors) == {
        "scores.attention",
        "scores.logic",
        "scores.memory",
    }


# Levels


@pytest.mark.parametrize(
    ("result", "total", "level"),
    [
        (scores(7, 4, 3), 14, "high"),
        (scores(7, 4, 2), 13, "medium"),
        (scores(10, 10, 5), 25, "high"),
        # 0.3 × 25 = 7.5, so 8 is the lowest medium total.
        (scores(4, 4, 0), 8, "medium"),
        (scores(4, 3, 0), 7, "low"),
        (scores(0, 0, 0), 0, "low"),
    ],
)
def test_level_from_thresholds(result, total, level):
    programme = new_programme(high=Decimal("0.56"), medium=Decimal("0.3"))

    assert programme.grade(result) == (total, level)


def test_level_at_threshold_compared_exactly():
    # In binary floating point 0.56 * 25 is 14.000000000000002, above 14.
    assert 0.56 * 25 > 14
    programme = new_programme(high=Decimal("0.56"))

    assert programme.grade(scores(7, 4, 3)) == (14, "high")


def expected_level(total: int, maximum: int, high: Decimal, medium: Decimal) -> str:
    if Fraction(total) >= Fraction(high) * maximum:
        return "high"
    if Fraction(total) >= Fraction(medium) * maximum:
        return "medium"
    return "low"


@st.composite
def graded_programmes(draw):
    maxima = draw(st.lists(st.integers(1, 40), min_size=1, max_size=6))
    places = draw(st.integers(0, 6))
    scale = 10**places
    medium, high = sorted(
        draw(st.lists(st.integers(0, scale), min_size=2, max_size=2, unique=True))
    )
    result = {
        f"c{index}": draw(st.integers(0, maximum))
        for index, maximum in enumerate(maxima)
    }
    return maxima, Decimal(high) / scale, Decimal(medium) / scale, result


@given(graded_programmes())
@example(([10, 10, 5], Decimal("0.56"), Decimal("0.3"), {"c0": 7, "c1": 4, "c2": 3}))
@example(([3], Decimal("0.7"), Decimal("0.1"), {"c0": 2}))
@example(([7, 3], Decimal("0.3"), Decimal("0.1"), {"c0": 3, "c1": 0}))
def test_level_matches_exact_fractions(case):
    maxima, high, medium, result = case
    criteria = [
        {"code": f"c{index}", "title": f"Критерий {index}", "max_score": maximum}
        for index, maximum in enumerate(maxima)
    ]
    programme = new_programme(criteria=criteria, high=high, medium=medium)

    total, level = programme.grade(result)

    assert total == sum(result.values())
    assert level == expected_level(total, sum(maxima), high, medium)


def test_programme_order_before_records_rejected():
    with pytest.raises(InvalidFieldError) as raised:
        Programme.approve(
            code="КРЗ-9",
            title="Программа",
            orientation="социально-педагогическая",
            approved_order=order("1-о", date(1, 1, 1)),
            criteria=CRITERIA,
            high=Decimal("0.56"),
            medium=Decimal("0.3"),
        )

    assert set(raised.value.errors) == {"approved_order.date"}
