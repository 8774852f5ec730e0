"""Request metrics added up over several worker processes (multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services import gunicorn_conf

# Runs in a child process: serve some requests, or scrape `/metrics`.
WORKER = textwrap.dedent(
    """
    import sys
    from services.records.web import create_app
    from shared.config import Settings

    settings = Settings.from_env({"RECORDS_DATABASE_URL": "memory://"}, sys.argv[1])
    client = create_app(settings).test_client()
    for _ in range(int(sys.argv[2])):
        assert client.get("/healthz").status_code == 200
    if sys.argv[3] == "scrape":
        print(client.get("/metrics").get_data(as_text=True))
    """
)
HEALTHZ = 'http_requests_total{method="GET",route="/healthz",status="200"}'


def run_worker(tmp_path: Path, metrics_dir: Path, requests: int, action: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    for key in list(env):
        if key.startswith(("RECORDS_", "ARCHIVE_", "PUPIL_RECORDS_")):
            del env[key]
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path), str(requests), action],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def count(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in the metrics:\n{text}")


def test_scrape_adds_up_every_worker(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()

    run_worker(tmp_path, metrics_dir, 3, "serve")
    run_worker(tmp_path, metrics_dir, 4, "serve")
    text = run_worker(tmp_path, metrics_dir, 2, "scrape")

    assert count(text, HEALTHZ) == 9
    assert "pupil_records_follower_position" in text
    assert "pupil_records_events_appended_total" in text


def test_gunicorn_start_clears_old_values(tmp_path, monkeypatch: pytest.MonkeyPatch):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_12345.db"
    stale.write_bytes(b"old")
    kept = metrics_dir / "notes.txt"
    kept.write_text("not a metrics file")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))

    gunicorn_conf.on_starting(None)

    assert not stale.exists()
    assert kept.exists()
