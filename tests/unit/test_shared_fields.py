"""Fields and schemas shared by both services."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.config import Settings
from shared.fields import (
    Cursor,
    InvalidCursorError,
    Name,
    OrderSchema,
    PageQuerySchema,
    PastOrToday,
    PersonName,
    QueryInteger,
    StrictDate,
    StrictInteger,
    Text,
    UtcTimestamp,
    UUIDField,
    centre_today,
    decode_cursor,
    encode_cursor,
    min_position_field,
    mixed_scripts,
)


def load(field: ma.fields.Field, value: Any) -> Any:
    schema = ma.Schema.from_dict({"value": field})()
    return schema.load({"value": value})["value"]


def error(field: ma.fields.Field, value: Any) -> list[str]:
    with pytest.raises(ma.ValidationError) as caught:
        load(field, value)
    messages = caught.value.messages
    assert isinstance(messages, dict)
    return list(messages["value"])


# StrictDate and PastOrToday


def test_strict_date_loads_iso():
    assert load(StrictDate(), "2024-02-29") == date(2024, 2, 29)


@pytest.mark.parametrize(
    "text", ["2024-2-1", "20240201", "2024-02-01T00:00", "01.02.2024", " 2024-02-01"]
)
def test_strict_date_rejects_other_formats(text: str):
    assert "YYYY-MM-DD" in error(StrictDate(), text)[0]


@pytest.mark.parametrize(
    "text", ["2023-02-29", "2024-13-01", "2024-04-31", "0000-01-01"]
)
def test_strict_date_rejects_impossible(text: str):
    assert f"{text} is not a valid calendar date" in error(StrictDate(), text)[0]


@pytest.mark.parametrize(
    "text", ["0001-01-01", "1899-12-31", "3000-01-01", "9999-12-31"]
)
def test_strict_date_rejects_out_of_range(text: str):
    message = error(StrictDate(), text)[0]

    assert f"{text} is out of range" in message
    assert "1900-01-01 to 2999-12-31" in message


@pytest.mark.parametrize("text", ["1900-01-01", "2999-12-31"])
def test_strict_date_accepts_range_ends(text: str):
    assert load(StrictDate(), text) == date.fromisoformat(text)


@pytest.mark.parametrize("value", [20240101, None, True, ["2024-01-01"]])
def test_strict_date_rejects_non_strings(value: Any):
    assert error(StrictDate(allow_none=False), value)


def test_strict_date_dumps_iso():
    schema = ma.Schema.from_dict({"d": StrictDate()})()

    assert schema.dump({"d": date(2024, 5, 1)}) == {"d": "2024-05-01"}


def test_past_or_today_with_given_today():
    field = StrictDate(validate=PastOrToday(today=lambda: date(2024, 5, 1)))

    assert load(field, "2024-05-01") == date(2024, 5, 1)
    assert "2024-05-01" in error(field, "2024-05-02")[0]


def test_past_or_today_uses_app_time_zone(tmp_path: Path):
    # At 22:30 UTC it is already tomorrow in Vladivostok (UTC+10).
    app = Flask("zone-test")
    app.config["SETTINGS"] = Settings.from_env(
        {"PUPIL_RECORDS_TIMEZONE": "Asia/Vladivostok"}, data_dir=tmp_path
    )
    utc_today = datetime.now(UTC).date()
    with app.app_context():
        zone_today = centre_today()
        assert zone_today - utc_today in (timedelta(0), timedelta(days=1))
        field = StrictDate(validate=PastOrToday())
        assert load(field, zone_today.isoformat()) == zone_today
        assert (
            "Asia/Vladivostok"
            in error(field, (zone_today + timedelta(1)).isoformat())[0]
        )


# UtcTimestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T09:30:00Z", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        ("2024-05-01T12:30+03:00", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        ("2024-05-01T09:30:00.123456Z", datetime(2024, 5, 1, 9, 30, 0, 123456, UTC)),
    ],
)
def test_timestamp_loads_as_utc(text: str, expected: datetime):
    assert load(UtcTimestamp(), text) == expected


@pytest.mark.parametrize(
    "text", ["2024-05-01T09:30:00", "2024-05-01", "yesterday", "2024-05-01T25:00:00Z"]
)
def test_timestamp_rejects_invalid(text: str):
    assert error(UtcTimestamp(), text)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:59:59+01:00",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T10:00:00-14:00",
    ],
)
def test_timestamp_outside_utc_range_is_invalid(text: str):
    assert f"{text} is out of range" in error(UtcTimestamp(), text)[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:00:00+14:00", datetime(9999, 12, 31, 9, tzinfo=UTC)),
    ],
)
def test_timestamp_at_range_ends_loads(text: str, expected: datetime):
    assert load(UtcTimestamp(), text) == expected


# Text and Name


def test_text_is_nfc_and_trimmed():
    decomposed = "  Е\u0308лкина\u200b\n"

    assert load(Name(), decomposed) == "Ёлкина"


def test_text_keeps_inner_spaces():
    assert load(Name(), " Анна  Мария ") == "Анна  Мария"


@pytest.mark.parametrize(
    "value", ["", "   ", "\u200b\u200d", "\ufeff \u00a0", "\u2060\t"]
)
def test_text_blank_is_rejected(value: str):
    assert error(Name(), value) == ["Must not be blank."]


def test_text_lone_surrogate_is_rejected():
    assert "surrogate" in error(Name(), "Ива\ud800нов")[0]


def test_name_rejects_line_breaks_and_controls():
    assert error(Name(), "Иван\nов") == ["Contains a control character."]
    assert error(Name(), "Иван\x00ов") == ["Contains a control character."]


def test_multiline_text_allows_line_breaks():
    assert load(Text(), "первая строка\nвторая") == "первая строка\nвторая"
    assert error(Text(), "a\x07b") == ["Contains a control character."]


def test_text_max_length():
    assert load(Name(max_length=3), " абв ") == "абв"
    assert "3" in error(Name(max_length=3), "абвг")[0]


# PersonName


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("Ёлки\u200bна", "U+200B"),
        ("Тест\u202eовая", "U+202E"),
        ("Анна\u200dМария", "U+200D"),
        ("Ива\u00adнов", "U+00AD"),
        ("Ива\u2066нов", "U+2066"),
        ("Ива\ufeffнов", "U+FEFF"),
    ],
)
def test_person_name_rejects_inner_format_character(value: str, code: str):
    [message] = error(PersonName(), value)

    assert f"format character {code}" in message


@pytest.mark.parametrize("value", ["Ива\x00нов", "Ива\x1bнов", "Ива\u0085нов"])
def test_person_name_rejects_control_character(value: str):
    assert error(PersonName(), value) == ["Contains a control character."]


def test_person_name_trims_format_characters_at_ends():
    assert load(PersonName(), "\u202eТест\u200b ") == "Тест"


@pytest.mark.parametrize(
    ("value", "scripts"),
    [
        ("Ёлкинa", "Cyrillic and Latin"),
        ("Ivanоv", "Cyrillic and Latin"),
        ("Анна Мaрия", "Cyrillic and Latin"),
        ("Петрοва", "Cyrillic and Greek"),
    ],
)
def test_person_name_rejects_mixed_scripts_in_word(value: str, scripts: str):
    [message] = error(PersonName(), value)

    assert f"Mixes {scripts} letters in one word" in message


@pytest.mark.parametrize(
    "value",
    [
        "Иванова-Smith",
        "Анна Mary",
        "O'Коннор",
        "Д'Артаньян",
        "Müller",
        "Ёлкина",
        "Жан-Поль",
    ],
)
def test_person_name_accepts_one_script_per_word(value: str):
    assert load(PersonName(), value) == value


@pytest.mark.parametrize(
    "value",
    [
        "Иванова\u2010Smith",
        "Иванова\u2013Smith",
        "Иванова \u2014 Smith",
        "Иванова\u2212Smith",
        "Иванова\uff0dSmith",
    ],
)
def test_person_name_dash_variants_separate_words(value: str):
    assert load(PersonName(), value) == value


@pytest.mark.parametrize(
    "value", ["Ива\u0301нов", "А\u0301нна", "Петрова \u2013 Водкина"]
)
def test_person_name_keeps_stress_marks_and_dashes(value: str):
    assert load(PersonName(), value) == value


def test_person_name_rejects_mixed_word_beside_dash():
    [message] = error(PersonName(), "Иванова\u2013Smithа")

    assert "Mixes Cyrillic and Latin letters in one word" in message


def test_mixed_scripts_lists_scripts_in_fixed_order():
    assert mixed_scripts("aб") == ["CYRILLIC", "LATIN"]
    assert mixed_scripts("бa б a") == ["CYRILLIC", "LATIN"]
    assert mixed_scripts("б a") == []


@pytest.mark.parametrize("value", [5, None, ["a"], {"a": 1}])
def test_text_rejects_non_strings(value: Any):
    assert error(Name(allow_none=False), value)


blank_chars = st.sampled_from(
    [
        " ",
        "\t",
        "\n",
        "\u00a0",
        "\u2003",
        "\u3000",
        "\u200b",
        "\u200d",
        "\ufeff",
        "\u2060",
    ]
)


@given(st.lists(blank_chars, max_size=20).map("".join))
def test_blank_text_never_accepted(value: str):
    with pytest.raises(ma.ValidationError):
        load(Name(), value)


@given(st.text(min_size=1, max_size=50))
def test_accepted_text_is_trimmed_nfc(value: str):
    try:
        loaded = load(Name(), value)
    except ma.ValidationError:
        return
    assert loaded == unicodedata.normalize("NFC", loaded)
    assert loaded.strip() == loaded
    assert unicodedata.category(loaded[0]) != "Cf"
    assert unicodedata.category(loaded[-1]) != "Cf"
    assert not any("\ud800" <= char <= "\udfff" for char in loaded)


@given(st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=50))
def test_letters_always_accepted(value: str):
    assume(len(unicodedata.normalize("NFC", value)) <= 200)

    assert load(Name(), value) == unicodedata.normalize("NFC", value)


# Integers and ids


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "1", None])
def test_strict_integer_rejects_non_integers(value: Any):
    assert error(StrictInteger(allow_none=False), value)


def test_strict_integer_accepts_int():
    assert load(StrictInteger(), 7) == 7


def test_uuid_field():
    text = "3FA85F64-5717-4562-B3FC-2C963F66AFA6"

    assert load(UUIDField(), text) == uuid.UUID(text)


@pytest.mark.parametrize(
    "value",
    [
        "42",
        "3fa85f645717-4562-b3fc-2c963f66afa6",
        "{3fa85f64-5717-4562-b3fc-2c963f66afa6}",
        42,
    ],
)
def test_uuid_field_rejects(value: Any):
    assert "expected a UUID" in error(UUIDField(), value)[0]


@pytest.mark.parametrize("text", ["10", "0", "-3"])
def test_query_integer_accepts_digits(text: str):
    assert load(QueryInteger(), text) == int(text)


@pytest.mark.parametrize("text", ["1.0", "1e3", " 1", "+1", "١٠", "", "ten", True])
def test_query_integer_rejects_other(text: Any):
    assert error(QueryInteger(), text) == ["Not a valid integer."]


def test_page_query_defaults_and_limits():
    schema = PageQuerySchema()

    assert schema.load({}) == {"limit": 100, "cursor": None, "min_position": None}
    assert schema.load({"limit": "1000"})["limit"] == 1000
    with pytest.raises(ma.ValidationError):
        schema.load({"limit": "1001"})
    with pytest.raises(ma.ValidationError):
        schema.load({"limit": "0"})


def test_min_position_field():
    schema = ma.Schema.from_dict({"min_position": min_position_field()})()

    assert schema.load({}) == {"min_position": None}
    assert schema.load({"min_position": "17"}) == {"min_position": 17}


# Orders


def test_order_schema_loads():
    loaded = OrderSchema().load({"number": " 12-о ", "date": "2024-01-10"})

    assert loaded == {"number": "12-о", "date": date(2024, 1, 10)}


def test_order_schema_rejects_future_and_unknown():
    with pytest.raises(ma.ValidationError) as caught:
        OrderSchema().load({"number": "1", "date": "2999-01-01", "note": "x"})

    assert set(caught.value.messages) == {"date", "note"}


# Cursors


cursor_values = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.none() | st.booleans() | st.integers() | st.uuids().map(str),
    max_size=4,
)


@given(cursor_values)
def test_cursor_round_trips(values: dict[str, Any]):
    text = encode_cursor(values)

    assert decode_cursor(text) == values
    assert decode_cursor(text, keys=list(values)) == values


@given(st.text(max_size=80))
def test_cursor_decoding_never_crashes(text: str):
    try:
        decoded = decode_cursor(text)
    except InvalidCursorError:
        return
    assert isinstance(decoded, dict)


def test_cursor_encodes_ids_dates_and_timestamps():
    pupil_id = uuid.uuid4()
    moment = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)

    decoded = decode_cursor(
        encode_cursor({"id": pupil_id, "on": date(2024, 5, 1), "at": moment})
    )

    assert decoded == {
        "id": str(pupil_id),
        "on": "2024-05-01",
        "at": "2024-05-01T09:30:00.000000Z",
    }


@pytest.mark.parametrize("value", ["Иванов", "ivanov", 1.5, ["a"]])
def test_cursor_refuses_free_text(value: Any):
    with pytest.raises(TypeError, match="personal data"):
        encode_cursor({"after": value})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "!!!",
        "a" * 2000,
        encode_cursor({}) + "=",
        "W10",  # base64url of "[]"
        "eyJhIjoiSXZhbm92In0",  # {"a":"Ivanov"}
    ],
)
def test_invalid_cursors(text: str):
    with pytest.raises(InvalidCursorError):
        decode_cursor(text)


def test_cursor_field_keys():
    field = Cursor(keys=("after",))
    good = encode_cursor({"after": 5})

    assert load(field, good) == {"after": 5}
    assert "Invalid cursor" in error(field, encode_cursor({"before": 5}))[0]
