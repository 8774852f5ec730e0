"""Smoke test: every benchmark runs end to end on a tiny size; no timing is checked.

The SQLite test starts the real service processes (gunicorn, projector,
follower), so it is marked `e2e`. The PostgreSQL test runs only the parts
that differ there: the throwaway databases, the decoder child and
LISTEN/NOTIFY.
"""

from __future__ import annotations

import io
import json

import pytest

from bench import cli
from bench.generate import LogBuilder
from bench.logsize import run_child
from bench.postgres import connect_server
from bench.raw import measure_propagation, raw_application, raw_url
from bench.stores import Backend


@pytest.mark.e2e
def test_every_benchmark_runs_tiny(tmp_path):
    options = cli.parse_options(
        [
            "--engines=sqlite",
            "--sizes=300,600",
            "--clients=2",
            "--duration=1",
            "--warmup=0.5",
            "--samples=3",
            "--reads=20",
            "--workers=1",
            f"--output={tmp_path / 'results'}",
        ]
    )
    out = io.StringIO()

    cli.run(options, out)

    [path] = (tmp_path / "results").glob("bench-*.json")
    result = json.loads(path.read_text(encoding="utf-8"))
    sqlite = result["engines"]["sqlite"]
    assert sqlite["commands"]["http"]["operations"] > 0
    assert sqlite["commands"]["http"]["failures"] == 0
    assert sqlite["retention"]["latency"]["samples"] == 3
    assert [size["target_events"] for size in sqlite["sizes"]] == [300, 600]
    assert all(size["reads"]["samples"] == 20 for size in sqlite["sizes"])
    assert "records-web worker" in sqlite["memory_mib"]["commands"]
    assert "archive-follower" in sqlite["memory_mib"]["retention"]
    assert result["machine"]["cores"] >= 1
    for heading in ("1. commands", "2. rebuild", "3. GET", "4. propagation", "5. peak"):
        assert heading in out.getvalue()


@pytest.mark.postgres
def test_postgres_parts_run_tiny(tmp_path, postgres_server):
    server = connect_server(postgres_server.url("postgres"))
    settings = Backend("postgres", tmp_path, server).fresh("log")

    head = LogBuilder(settings, seed=5, workers=1, steps=1).grow_to(300)
    decoded = run_child("decode", settings)
    with raw_application(raw_url(settings)) as app:
        latency = measure_propagation(
            app, listen=True, samples=3, pause=(0.0, 0.01), seed=1
        )

    assert head >= 300
    assert decoded["library"]["events"] == head
    assert decoded["records_mapper"]["events"] == head
    assert latency.samples == 3
