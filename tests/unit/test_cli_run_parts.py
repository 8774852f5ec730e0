"""Parts of `pupil-records run`: local tokens, child specs, backoff, gunicorn."""

from __future__ import annotations

import importlib
import io
import json
import signal
import socket
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

from services import runner
from shared.auth import ROLES, TokenStore
from shared.config import ConfigurationError, Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(environ={}, data_dir=tmp_path / "data")


def test_local_tokens_one_per_role(settings: Settings) -> None:
    tokens = runner.ensure_local_tokens(settings)
    store = TokenStore(settings.tokens_file)

    assert sorted(tokens) == sorted(ROLES)
    for role, token in tokens.items():
        principal = store.authenticate(token)
        assert principal is not None, role
        assert principal.role == role
    assert len(store.list()) == len(ROLES)


def test_local_tokens_file_is_private(settings: Settings) -> None:
    tokens = runner.ensure_local_tokens(settings)
    path = runner.local_tokens_path(settings)

    assert path.parent == settings.data_dir
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text(encoding="utf-8")) == tokens


def test_local_tokens_reused(settings: Settings) -> None:
    first = runner.ensure_local_tokens(settings)
    second = runner.ensure_local_tokens(settings)

    assert second == first
    assert len(TokenStore(settings.tokens_file).list()) == len(ROLES)


def test_revoked_local_token_reissued(settings: Settings) -> None:
    first = runner.ensure_local_tokens(settings)
    store = TokenStore(settings.tokens_file)
    [registrar] = [info for info in store.list() if info.role == "registrar"]
    store.revoke(registrar.id)

    second = runner.ensure_local_tokens(settings)

    assert second["registrar"] != first["registrar"]
    assert store.authenticate(second["registrar"]) is not None
    others = {role: token for role, token in second.items() if role != "registrar"}
    assert others == {role: t for role, t in first.items() if role != "registrar"}
    saved = json.loads(runner.local_tokens_path(settings).read_text(encoding="utf-8"))
    assert saved == second


def test_local_token_of_other_role_reissued(settings: Settings) -> None:
    first = runner.ensure_local_tokens(settings)
    swapped = {**first, "admin": first["subscriber"]}
    runner.local_tokens_path(settings).write_text(json.dumps(swapped))

    second = runner.ensure_local_tokens(settings)

    assert second["admin"] != first["subscriber"]
    principal = TokenStore(settings.tokens_file).authenticate(second["admin"])
    assert principal is not None
    assert principal.role == "admin"


@pytest.mark.parametrize("content", ["{broken", "[1, 2]", '{"admin": 5}'])
def test_unreadable_local_tokens_reissued(settings: Settings, content: str) -> None:
    settings.data_dir.mkdir(parents=True)
    runner.local_tokens_path(settings).write_text(content)

    tokens = runner.ensure_local_tokens(settings)

    assert sorted(tokens) == sorted(ROLES)
    saved = json.loads(runner.local_tokens_path(settings).read_text(encoding="utf-8"))
    assert saved == tokens


def test_process_specs_names_and_commands(settings: Settings) -> None:
    specs = runner.process_specs(settings, 18000, 18001)
    by_name = {spec.name: spec for spec in specs}

    assert list(by_name) == [
        "records-web",
        "records-projector",
        "archive-web",
        "archive-follower",
    ]
    assert by_name["records-web"].argv[-1] == "services.records.web:create_app()"
    assert by_name["archive-web"].argv[-1] == "services.archive.web:create_app()"
    assert "python:services.gunicorn_conf" in by_name["records-web"].argv
    assert by_name["records-projector"].argv[-2:] == ("records", "project")
    assert by_name["archive-follower"].argv[-2:] == ("archive", "follow")
    for spec in specs:
        assert spec.argv[0] == sys.executable


def test_process_specs_environment(settings: Settings) -> None:
    configured = Settings.from_env(
        environ={"ARCHIVE_FEED_TOKEN": "feed-token"}, data_dir=settings.data_dir
    )
    specs = {spec.name: spec for spec in runner.process_specs(configured, 9100, 9101)}

    assert specs["records-web"].env["PUPIL_RECORDS_BIND"] == "127.0.0.1:9100"
    assert specs["archive-web"].env["PUPIL_RECORDS_BIND"] == "127.0.0.1:9101"
    for spec in specs.values():
        for key, value in configured.with_env().items():
            assert spec.env[key] == value, (spec.name, key)
        assert spec.env["ARCHIVE_FEED_TOKEN"] == "feed-token"
        assert spec.env["PUPIL_RECORDS_GRACEFUL_TIMEOUT"] == str(
            runner.GUNICORN_GRACEFUL_TIMEOUT_SECONDS
        )
        assert Settings.from_env(environ=spec.env) == configured


def test_restart_delay_doubles_to_cap(settings: Settings) -> None:
    child = runner.Child(runner.ProcessSpec("worker", ("true",), {}), Path("x.log"))
    delays = []
    for _ in range(8):
        child.started_at = 100.0
        delays.append(child.schedule_restart(now=101.0))

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert child.restart_at == 131.0


def test_restart_delay_resets_after_stable_run(settings: Settings) -> None:
    child = runner.Child(runner.ProcessSpec("worker", ("true",), {}), Path("x.log"))
    child.started_at = 0.0
    for _ in range(4):
        child.schedule_restart(now=1.0)

    child.started_at = 10.0
    delay = child.schedule_restart(now=10.0 + runner.STABLE_UPTIME_SECONDS)

    assert delay == 1.0


def test_describe_exit() -> None:
    assert runner.describe_exit(3) == "exited with code 3"
    assert runner.describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def test_busy_port_rejected() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        with pytest.raises(runner.RunnerError, match=f"port {port} .* in use"):
            runner.check_port_free(port)


def test_free_port_accepted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    runner.check_port_free(port)


def test_same_ports_rejected(settings: Settings) -> None:
    with pytest.raises(runner.RunnerError, match="must differ"):
        runner.run(settings, 18000, 18000)

    assert not settings.data_dir.exists()


def test_service_urls_probes() -> None:
    urls = runner.ServiceUrls("http://127.0.0.1:1", "http://127.0.0.1:2")

    assert urls.probes() == [
        "http://127.0.0.1:1/healthz",
        "http://127.0.0.1:1/readyz",
        "http://127.0.0.1:2/healthz",
        "http://127.0.0.1:2/readyz",
    ]


def load_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for key in (
        "PUPIL_RECORDS_BIND",
        "WEB_CONCURRENCY",
        "PUPIL_RECORDS_THREADS",
        "PUPIL_RECORDS_GRACEFUL_TIMEOUT",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("services.gunicorn_conf", None)
    return importlib.import_module("services.gunicorn_conf")


def test_gunicorn_conf_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(monkeypatch)

    assert conf.bind == ["127.0.0.1:8000"]
    assert conf.workers == 2
    assert conf.threads == 16
    assert conf.worker_class == "gthread"
    assert conf.preload_app is False
    assert conf.accesslog == "-"
    assert conf.graceful_timeout == 10
    assert conf.control_socket_disable is True


def test_gunicorn_conf_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(
        monkeypatch,
        PUPIL_RECORDS_BIND="0.0.0.0:9000",
        WEB_CONCURRENCY="3",
        PUPIL_RECORDS_THREADS="8",
        PUPIL_RECORDS_GRACEFUL_TIMEOUT="5",
    )

    assert conf.bind == ["0.0.0.0:9000"]
    assert conf.workers == 3
    assert conf.threads == 8
    assert conf.graceful_timeout == 5


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_gunicorn_conf_bad_workers(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ConfigurationError, match="WEB_CONCURRENCY"):
        load_gunicorn_conf(monkeypatch, WEB_CONCURRENCY=value)
    sys.modules.pop("services.gunicorn_conf", None)


def test_gunicorn_conf_loads_in_gunicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn.app.base import Application

    load_gunicorn_conf(
        monkeypatch, PUPIL_RECORDS_BIND="127.0.0.1:9911", WEB_CONCURRENCY="3"
    )
    sys.modules.pop("services.gunicorn_conf", None)

    class ConfigProbe(Application):
        def load_config(self) -> None:
            self.load_config_from_module_name_or_filename(
                "python:services.gunicorn_conf"
            )

        def load(self) -> None:
            return None

    config = ConfigProbe().cfg

    assert config.bind == ["127.0.0.1:9911"]
    assert config.workers == 3
    assert config.threads == 16
    assert config.worker_class_str == "gthread"
    assert config.preload_app is False
    assert config.accesslog == "-"


GUNICORN_BOOT_FAILURE = """\
[2026-01-05 10:00:00 +0000] [11] [INFO] Booting worker with pid: 12
[2026-01-05 10:00:01 +0000] [12] [ERROR] Exception in worker process
Traceback (most recent call last):
  File "/app/services/records/keys.py", line 186, in load_master_key
    raise MasterKeyError(
services.records.keys.MasterKeyError: no master key in production mode
[2026-01-05 10:00:01 +0000] [12] [INFO] Worker exiting (pid: 12)
[2026-01-05 10:00:02 +0000] [11] [ERROR] Worker (pid:12) exited with code 3.
[2026-01-05 10:00:02 +0000] [11] [ERROR] Shutting down: Master
[2026-01-05 10:00:02 +0000] [11] [ERROR] Reason: Worker failed to boot.
gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>
"""


def test_error_lines_skip_gunicorn_boilerplate(tmp_path: Path) -> None:
    log = tmp_path / "records-web.log"
    log.write_text(GUNICORN_BOOT_FAILURE, encoding="utf-8")

    assert runner.error_lines(log) == [
        "services.records.keys.MasterKeyError: no master key in production mode"
    ]


def test_error_lines_keep_click_errors_and_records(tmp_path: Path) -> None:
    log = tmp_path / "records-projector.log"
    log.write_text(
        "2026-01-05 10:00:00,001 INFO services.cli: records projector started\n"
        "2026-01-05 10:00:00,002 ERROR services.records: database is locked\n"
        "Error: the records database cannot be opened\n",
        encoding="utf-8",
    )

    assert runner.error_lines(log) == [
        "2026-01-05 10:00:00,002 ERROR services.records: database is locked",
        "Error: the records database cannot be opened",
    ]


def test_error_lines_start_at_offset(tmp_path: Path) -> None:
    log = tmp_path / "archive-web.log"
    earlier = "Error: an earlier run failed\n"
    log.write_text(earlier + "Error: this run failed\n", encoding="utf-8")

    lines = runner.error_lines(log, offset=len(earlier.encode("utf-8")))

    assert lines == ["Error: this run failed"]


def test_error_lines_fall_back_to_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "archive-follower.log"
    log.write_text("one\n\ntwo\nthree\nfour\n", encoding="utf-8")

    assert runner.error_lines(log, limit=2) == ["three", "four"]


def test_error_lines_of_missing_log(tmp_path: Path) -> None:
    assert runner.error_lines(tmp_path / "missing.log") == []


def run_script_child(logs: Path, name: str, script: str) -> runner.Supervisor:
    """Supervise one Python child running `script` until it has ended."""
    spec = runner.ProcessSpec(name, (sys.executable, "-c", script), {})
    supervisor = runner.Supervisor([spec], logs, runner.OutputSink(io.StringIO(), 8))
    supervisor.start_all()
    process = supervisor.children[0].process
    assert process is not None
    process.wait(timeout=30)
    return supervisor


def test_start_up_failure_shows_cause(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "failing.log").write_text("Error: an older failure\n", encoding="utf-8")
    script = "import sys; print('Error: the master key is missing'); sys.exit(1)"
    supervisor = run_script_child(logs, "failing", script)

    with pytest.raises(runner.RunnerError) as raised:
        supervisor.check_started()

    message = str(raised.value)
    assert message.startswith("failing exited with code 1 during start-up:")
    assert "  Error: the master key is missing" in message
    assert "older failure" not in message
    assert str(logs / "failing.log") in message
    supervisor.stop_all()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_data_dir_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"

    with runner.private_umask():
        runner.make_data_dir_private(data_dir)

    assert mode_of(data_dir) == 0o700


def test_loose_data_dir_is_restricted(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    (data_dir / "logs").mkdir(parents=True)
    data_dir.chmod(0o755)
    (data_dir / "logs").chmod(0o755)
    files = ["records.sqlite", "records.sqlite-wal", "tokens.json", "master.key"]
    for name in files:
        (data_dir / name).write_text("x", encoding="utf-8")
        (data_dir / name).chmod(0o644)
    (data_dir / "logs" / "records-web.log").write_text("x", encoding="utf-8")
    (data_dir / "logs" / "records-web.log").chmod(0o644)

    runner.make_data_dir_private(data_dir)

    assert mode_of(data_dir) == 0o700
    assert mode_of(data_dir / "logs") == 0o700
    for name in files:
        assert mode_of(data_dir / name) == 0o600, name
    assert mode_of(data_dir / "logs" / "records-web.log") == 0o600


def test_private_data_dir_parent_untouched(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)

    runner.make_data_dir_private(tmp_path / "var")

    assert mode_of(tmp_path) == 0o755


def test_children_create_private_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    created = tmp_path / "created.txt"
    script = f"open({str(created)!r}, 'w').close()"
    supervisor = run_script_child(logs, "writer", script)
    child = supervisor.children[0]
    supervisor.stop_all()

    assert mode_of(created) == 0o600
    assert mode_of(child.log_file) == 0o600
    assert mode_of(logs) == 0o700


ACCESS_OK = (
    '127.0.0.1 [05/Jan/2026:10:00:00 +0000] "POST /api/v1/pupils" 201 512 9ms a1'
)
ACCESS_FAILED = (
    '127.0.0.1 [05/Jan/2026:10:00:00 +0000] "POST /api/v1/pupils" 409 300 8ms a2'
)


def test_quiet_sink_drops_successful_requests() -> None:
    stream = io.StringIO()
    sink = runner.OutputSink(stream, 11)
    sink.quiet_access_log.set()

    sink.write("records-web", ACCESS_OK)
    sink.write("records-web", ACCESS_FAILED)
    sink.write("records-web", "[INFO] Booting worker with pid: 12")

    written = stream.getvalue()
    assert ACCESS_OK not in written
    assert ACCESS_FAILED in written
    assert "Booting worker" in written


def test_sink_writes_requests_by_default() -> None:
    stream = io.StringIO()
    sink = runner.OutputSink(stream, 11)

    sink.write("records-web", ACCESS_OK)

    assert stream.getvalue() == f"records-web | {ACCESS_OK}\n"


def test_error_lines_without_fallback(tmp_path: Path) -> None:
    log = tmp_path / "records-projector.log"
    log.write_text("INFO records projector started\n", encoding="utf-8")

    assert runner.error_lines(log, fallback=False) == []


def test_restart_warning_names_last_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = "import sys; print('Error: the database is locked'); sys.exit(2)"
    supervisor = run_script_child(tmp_path / "logs", "crasher", script)

    with caplog.at_level("WARNING", logger="services.runner"):
        supervisor.tend()
    supervisor.stop_all()

    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("crasher exited with code 2; restarting in 1 s")
    assert warning.endswith("; last error: Error: the database is locked")


def test_demo_summary_printed_once(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import date

    from services.demo import DemoSummary

    summary = DemoSummary(
        counts={"pupils": 3},
        first_day=date(2023, 9, 1),
        last_day=date(2025, 5, 31),
        elapsed_seconds=1.0,
        last_position=42,
    )

    def load(records_url: str, tokens: dict[str, str], progress: bool) -> DemoSummary:
        if progress:
            print(summary, flush=True)
        return summary

    monkeypatch.setattr(runner, "records_store_is_empty", lambda url, tokens: True)
    monkeypatch.setattr(runner, "_demo_loader", lambda: load)
    caplog.set_level("INFO", logger=runner.log.name)

    runner._load_demo_if_empty("http://127.0.0.1:1", {})

    output = capsys.readouterr().out + caplog.text
    assert output.count("Demo centre loaded") == 1
    assert "last records position 42" in caplog.text
