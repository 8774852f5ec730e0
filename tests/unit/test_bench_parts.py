"""The benchmark's own parts: options, statistics, data generation, reports."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest

from bench import cli, report
from bench.generate import LogGenerator, approve_programmes, open_records
from bench.logsize import SizeResult, estimate_seconds
from bench.people import PupilNames
from bench.raw import raw_application, read_and_decode, save_note
from bench.stats import Latency, percentile
from bench.stores import Backend
from services.records.projector import RecordsProjector
from services.records.readmodels import RecordsReadModels
from tests.conftest import read_models_engine


@pytest.mark.parametrize(
    ("text", "events"),
    [("10000", 10_000), ("10k", 10_000), ("100K", 100_000), ("1M", 1_000_000)],
)
def test_size_parsed(text, events):
    assert cli.parse_size(text) == events


@pytest.mark.parametrize("text", ["", "ten", "1G", "-5", "0"])
def test_invalid_size_rejected(text):
    with pytest.raises(cli.UsageError):
        cli.parse_size(text)


def test_unknown_engine_rejected():
    with pytest.raises(cli.UsageError, match="mysql"):
        cli.parse_options(["--engines", "sqlite,mysql"])


def test_options_from_environment(monkeypatch):
    monkeypatch.setenv("BENCH_ENGINES", "sqlite")
    monkeypatch.setenv("BENCH_SIZES", "1M,10k")

    options = cli.parse_options([])

    assert options.engines == ("sqlite",)
    assert options.sizes == (10_000, 1_000_000)


def test_flag_beats_environment(monkeypatch):
    monkeypatch.setenv("BENCH_CLIENTS", "3")

    assert cli.parse_options(["--clients", "5"]).clients == 5


def test_percentile_nearest_rank():
    values = list(range(1, 101))

    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_of_nothing_rejected():
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_latency_in_milliseconds():
    latency = Latency.of([0.001, 0.002, 0.003])

    assert latency.samples == 3
    assert latency.p50_ms == pytest.approx(2.0)
    assert latency.max_ms == pytest.approx(3.0)


def test_names_never_repeat():
    names = PupilNames(random.Random(1))
    born = (date(2015, 1, 1), date(2015, 1, 3))

    drawn = [names.draw(born) for _ in range(500)]

    keys = {(p.surname, p.name, p.patronymic, p.birth_date) for p in drawn}
    assert len(keys) == 500
    assert all(born[0] <= p.birth_date <= born[1] for p in drawn)


def test_name_partitions_disjoint():
    born = (date(2014, 1, 1), date(2016, 12, 31))
    first = PupilNames(random.Random(1), partition=(0, 3))
    second = PupilNames(random.Random(1), partition=(2, 3))

    dates_first = {first.draw(born).birth_date.toordinal() % 3 for _ in range(200)}
    dates_second = {second.draw(born).birth_date.toordinal() % 3 for _ in range(200)}

    assert dates_first == {0}
    assert dates_second == {2}


def test_generated_log_projects_cleanly(tmp_path):
    settings = Backend("sqlite", tmp_path).fresh("log")
    app = open_records(settings)
    try:
        programmes = approve_programmes(app)
        generator = LogGenerator(app, programmes, seed=3)
        written = generator.grow_by(400)
        engine = read_models_engine(settings.records_database_url)
        projected = RecordsProjector(app, engine).catch_up()
        counts = RecordsReadModels(engine).counts()
        engine.dispose()
    finally:
        app.close()

    assert written >= 400
    assert projected == written + 2 * len(programmes)
    assert counts["rm_pupils"] == len(generator.pupil_ids)
    assert counts["rm_sessions"] > 0
    assert counts["rm_attendance"] > 0


def test_raw_decode_reads_whole_log(tmp_path):
    settings = Backend("sqlite", tmp_path).fresh("raw")
    url = f"sqlite:///{tmp_path / 'raw.sqlite'}"
    with raw_application(url) as app:
        positions = [save_note(app) for _ in range(25)]
        decoded = read_and_decode(app.recorder, app.mapper, page=10)

    assert settings.records_database_url != url
    assert decoded.events == 25
    assert positions == sorted(positions)


def _size(events, generate_s, decode_rate, rebuild_rate, reads_s):
    return SizeResult(
        target_events=events,
        events=events,
        added_events=events,
        pupils=1,
        generate_seconds=generate_s,
        decode_library_per_second=decode_rate,
        decode_records_mapper_per_second=decode_rate,
        rebuild_per_second=rebuild_rate,
        rebuild_seconds=events / rebuild_rate,
        rebuild_cpu_seconds=events / rebuild_rate,
        rebuild_ratio=rebuild_rate / decode_rate,
        rebuild_ratio_library=rebuild_rate / decode_rate,
        rebuild_max_rss_mib=1.0,
        reads_seconds=reads_s,
    )


def test_estimate_scales_measured_rates():
    previous = _size(1000, generate_s=10, decode_rate=1000, rebuild_rate=100, reads_s=5)

    # 9000 new events at 100/s, then 10000 events at 1/1000 + 1/1000 + 1/100 s.
    assert estimate_seconds(previous, 10_000) == pytest.approx(90 + 120 + 5)


def test_table_aligns_columns():
    text = report.table(["name", "value"], [["a", "1"], ["longer", "1,000"]])

    lines = text.splitlines()
    assert lines[0] == "name    value"
    assert lines[2] == "a           1"
    assert lines[3] == "longer  1,000"


def test_report_marks_missed_target():
    tight = _size(1000, generate_s=1, decode_rate=1000, rebuild_rate=100, reads_s=1)

    text = report.sizes_table([tight])

    assert "MISSED" in text
    assert "0.10" in text


def test_results_folder_ignored_by_git():
    ignore = Path(cli.__file__).with_name(".gitignore").read_text(encoding="utf-8")

    assert "results/" in ignore.split()
