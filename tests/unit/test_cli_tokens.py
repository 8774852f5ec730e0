"""`pupil-records token …` and the options every leaf command shares."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import cli
from shared.auth import ROLES, TokenStore, hash_token

LEAF_COMMANDS = [
    ["run"],
    ["token", "issue"],
    ["token", "list"],
    ["token", "revoke"],
    ["records", "rebuild"],
    ["records", "project"],
    ["archive", "rebuild"],
    ["archive", "follow"],
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("PUPIL_RECORDS_", "RECORDS_", "ARCHIVE_")):
            monkeypatch.delenv(key)
    # A forgotten --data-dir must not write into the checkout's ./var.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def issue(runner: CliRunner, data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["token", "issue", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


def test_issue_prints_only_the_token(runner: CliRunner, tmp_path: Path) -> None:
    code, out, err = issue(runner, tmp_path, "--role", "registrar", "--name", "Иванова")

    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    token = lines[0]
    assert token.strip() == token
    assert len(token) >= 32
    principal = TokenStore(tmp_path / "tokens.json").authenticate(token)
    assert principal is not None
    assert principal.role == "registrar"
    assert principal.name == "Иванова"


def test_issue_stores_hash_not_token(runner: CliRunner, tmp_path: Path) -> None:
    code, out, _ = issue(runner, tmp_path, "--role", "admin", "--name", "Петров Пётр")
    token = out.strip()
    text = (tmp_path / "tokens.json").read_text(encoding="utf-8")

    assert code == 0
    assert token not in text
    hashes = [entry["hash"] for entry in json.loads(text)["tokens"]]
    assert hashes == [hash_token(token)]
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600


def test_issue_gives_distinct_tokens(runner: CliRunner, tmp_path: Path) -> None:
    first = issue(runner, tmp_path, "--role", "methodist", "--name", "Сидорова")[1]
    second = issue(runner, tmp_path, "--role", "methodist", "--name", "Сидорова")[1]

    assert first != second
    assert len(TokenStore(tmp_path / "tokens.json").list()) == 2


@pytest.mark.parametrize("role", ROLES)
def test_issue_accepts_every_role(runner: CliRunner, tmp_path: Path, role: str) -> None:
    code, out, err = issue(runner, tmp_path, "--role", role, "--name", "Holder")

    assert code == 0, err
    principal = TokenStore(tmp_path / "tokens.json").authenticate(out.strip())
    assert principal is not None
    assert principal.role == role


@pytest.mark.parametrize("role", ["root", "Admin", "", "subscriber "])
def test_issue_rejects_unknown_role(
    runner: CliRunner, tmp_path: Path, role: str
) -> None:
    code, out, err = issue(runner, tmp_path, "--role", role, "--name", "Holder")

    assert code == 2
    assert out == ""
    assert "--role" in err
    assert "registrar" in err
    assert "Traceback" not in err
    assert not (tmp_path / "tokens.json").exists()


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_issue_rejects_blank_name(runner: CliRunner, tmp_path: Path, name: str) -> None:
    code, out, err = issue(runner, tmp_path, "--role", "admin", "--name", name)

    assert code == 2
    assert out == ""
    assert "--name" in err
    assert not (tmp_path / "tokens.json").exists()


def test_issue_requires_role_and_name(runner: CliRunner, tmp_path: Path) -> None:
    code, out, err = issue(runner, tmp_path, "--name", "Holder")

    assert code == 2
    assert out == ""
    assert "--role" in err


def test_data_dir_before_other_options(runner: CliRunner, tmp_path: Path) -> None:
    data_dir = tmp_path / "before"
    result = runner.invoke(
        cli,
        [
            "token",
            "issue",
            "--data-dir",
            str(data_dir),
            "--role",
            "admin",
            "--name",
            "A",
        ],
    )

    assert result.exit_code == 0, result.stderr
    assert (data_dir / "tokens.json").exists()


def test_data_dir_from_environment(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "from-env"
    monkeypatch.setenv("PUPIL_RECORDS_DATA_DIR", str(data_dir))

    result = runner.invoke(cli, ["token", "issue", "--role", "admin", "--name", "A"])

    assert result.exit_code == 0, result.stderr
    assert (data_dir / "tokens.json").exists()


def test_data_dir_option_wins_over_env(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUPIL_RECORDS_DATA_DIR", str(tmp_path / "env"))

    code, _, err = issue(runner, tmp_path / "option", "--role", "admin", "--name", "A")

    assert code == 0, err
    assert (tmp_path / "option" / "tokens.json").exists()
    assert not (tmp_path / "env").exists()


def test_tokens_file_from_environment(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens_file = tmp_path / "elsewhere" / "tokens.json"
    monkeypatch.setenv("PUPIL_RECORDS_TOKENS_FILE", str(tokens_file))

    code, out, err = issue(runner, tmp_path / "data", "--role", "admin", "--name", "A")

    assert code == 0, err
    assert TokenStore(tokens_file).authenticate(out.strip()) is not None


def test_data_dir_default_is_var(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["token", "issue", "--role", "admin", "--name", "A"])

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "var" / "tokens.json").exists()


@pytest.mark.parametrize("command", LEAF_COMMANDS, ids=" ".join)
def test_every_leaf_command_has_data_dir(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(cli, [*command, "--help"])

    assert result.exit_code == 0
    assert "--data-dir" in result.stdout


def test_list_shows_tokens_without_secrets(runner: CliRunner, tmp_path: Path) -> None:
    token = issue(runner, tmp_path, "--role", "inspector", "--name", "Ревизор")[1]
    result = runner.invoke(cli, ["token", "list", "--data-dir", str(tmp_path)])

    assert result.exit_code == 0, result.stderr
    [line] = result.stdout.splitlines()
    token_id, role, name, issued_at = line.split("\t")
    assert role == "inspector"
    assert name == "Ревизор"
    assert issued_at.endswith("Z")
    assert token.strip() not in result.stdout
    assert token_id == TokenStore(tmp_path / "tokens.json").list()[0].id


def test_list_of_empty_store_prints_nothing(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["token", "list", "--data-dir", str(tmp_path)])

    assert result.exit_code == 0
    assert result.stdout == ""


def test_revoke_removes_the_token(runner: CliRunner, tmp_path: Path) -> None:
    token = issue(runner, tmp_path, "--role", "archivist", "--name", "A")[1].strip()
    store = TokenStore(tmp_path / "tokens.json")
    token_id = store.list()[0].id

    result = runner.invoke(
        cli, ["token", "revoke", token_id, "--data-dir", str(tmp_path)]
    )

    assert result.exit_code == 0, result.stderr
    assert store.authenticate(token) is None
    assert store.list() == []


def test_revoke_unknown_id_fails(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["token", "revoke", "nope", "--data-dir", str(tmp_path)]
    )

    assert result.exit_code == 1
    assert "nope" in result.stderr
    assert "token list" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_token_file_is_one_line_error(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "tokens.json").write_text("{not json", encoding="utf-8")

    result = runner.invoke(cli, ["token", "list", "--data-dir", str(tmp_path)])

    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "tokens.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_is_one_line_error(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUPIL_RECORDS_TIMEZONE", "Mars/Olympus")

    code, out, err = issue(runner, tmp_path, "--role", "admin", "--name", "A")

    assert code == 1
    assert out == ""
    assert "PUPIL_RECORDS_TIMEZONE" in err
    assert len(err.strip().splitlines()) == 1


def test_unexpected_error_is_one_line(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_issue(self: TokenStore, role: str, name: str) -> str:
        raise OSError("No space left on device\nsecond line")

    monkeypatch.setattr(TokenStore, "issue", broken_issue)

    code, out, err = issue(runner, tmp_path, "--role", "admin", "--name", "A")

    assert code == 1
    assert out == ""
    assert err.strip() == "Error: OSError: No space left on device"
