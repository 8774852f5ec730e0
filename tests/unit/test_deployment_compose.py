"""docker-compose.yml: services, commands, settings, secrets and volumes.

No Docker engine is needed: the file is parsed, its `${NAME:-default}`
references are filled with their defaults, and each command is resolved
against the installed package the way the container would run it. The image
has no entry point, so the services read the secret files themselves, and a
folder of test secrets replaces /run/secrets.
"""

from __future__ import annotations

import ast
import base64
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from flask import Flask
from gunicorn.app.wsgiapp import WSGIApplication
from sqlalchemy.engine import make_url

from services import cli as cli_module
from services.records.keys import load_master_key
from shared.auth import TokenStore
from shared.config import ConfigurationError, Settings
from shared.security import production_problems
from shared.storage import eventsourcing_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
INIT_SCRIPT_DIR = ROOT / "docker" / "postgres-init"
INIT_SECRETS = ROOT / "docker" / "init-secrets.sh"

APP_SERVICES = ("records-web", "records-projector", "archive-web", "archive-follower")
WEB_SERVICES = ("records-web", "archive-web")
WORKER_SERVICES = ("records-projector", "archive-follower")
RECORDS_SERVICES = ("records-web", "records-projector")
ARCHIVE_SERVICES = ("archive-web", "archive-follower")
SECRETS_MOUNT = "/run/secrets/"
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
)
# Names of variables that hold a secret. PUPIL_RECORDS_TOKENS_FILE does not
# match: the token file holds only hashes of the tokens.
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|CIPHER|_TOKEN(?:_FILE)?$|_KEY(?:_FILE)?$")

# Values written into the secret files of the tests. The password has the
# characters that a URL must quote.
SECRET_VALUES = {
    "records_db_password": "rec p@ss:w/rd%?#'\"",
    "archive_db_password": "arch+pass&word=1",
    "archive_feed_token": "subscriber-token-for-tests",
    "postgres_password": "superuser-password-for-tests",
    "master_key": base64.b64encode(bytes(range(32))).decode("ascii"),
}
# Mode of the master key file, which only its owner, the service, may read.
MASTER_KEY_MODE = 0o400


# ------------------------------------------------------------------- helpers


def interpolate(value: Any) -> Any:
    """Fill every `${NAME:-default}` with its default, as with an empty env."""
    if isinstance(value, str):
        filled = INTERPOLATION.sub(lambda match: match["default"] or "", value)
        return filled.replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    """The compose file as YAML gives it, with `${...}` references intact."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    """The compose file with every `${...}` reference set to its default."""
    return interpolate(raw_compose)


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """Return the environment that compose sets on a service's container."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.split("=", 1) for item in environment)
        return {name: value for name, value in pairs}
    return {
        name: "" if value is None else str(value) for name, value in environment.items()
    }


def service_secrets(service: Mapping[str, Any]) -> set[str]:
    """Return the names of the secrets mounted into a service."""
    names = set()
    for item in service.get("secrets") or []:
        names.add(item if isinstance(item, str) else item["source"])
    return names


def secret_files_in(environment: Mapping[str, str]) -> dict[str, str]:
    """Return the `*_FILE` variables whose value is a mounted secret."""
    return {
        name: value
        for name, value in environment.items()
        if name.endswith("_FILE") and value.startswith(SECRETS_MOUNT)
    }


def container_environment(
    service: Mapping[str, Any], secrets_dir: Path
) -> dict[str, str]:
    """Return a service's environment with `secrets_dir` in place of /run/secrets."""
    environment = service_environment(service)
    for name, path in secret_files_in(environment).items():
        secret = path.removeprefix(SECRETS_MOUNT)
        environment[name] = str(secrets_dir / secret)
    return environment


def start_service(name: str, environment: Mapping[str, str]) -> Settings:
    """Read a service's settings and secrets as its process does at start."""
    settings = Settings.from_env(environment)
    if name in RECORDS_SERVICES:
        load_master_key(settings)
    return settings


def image_secrets_mode() -> int:
    """Return the mode that the Dockerfile gives /run/secrets in the image."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    found = re.search(r"install -d\b[^\n]*? -m (0[0-7]{3}) /run/secrets\b", text)
    assert found is not None, "the Dockerfile does not create /run/secrets"
    return int(found[1], 8)


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """A folder like /run/secrets in a container, with one test value per secret.

    Each file contains one line. The master key belongs to the user who runs the
    tests, as it belongs to the service's user in the container.
    """
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name, value in SECRET_VALUES.items():
        (folder / name).write_text(value + "\n", encoding="utf-8")
    (folder / "master_key").chmod(MASTER_KEY_MODE)
    folder.chmod(image_secrets_mode())
    return folder


def run_init_secrets(folder: Path) -> subprocess.CompletedProcess[str]:
    """Run docker/init-secrets.sh, giving the master key to the test's user.

    That needs no root; test_deployment_scripts.py covers the default owner.
    """
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PUPIL_RECORDS_KEY_OWNER": f"{os.getuid()}:{os.getgid()}",
    }
    return subprocess.run(
        ["sh", str(INIT_SECRETS), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def prepare_data_dir(environment: dict[str, str], folder: Path) -> None:
    """Move the data dir into `folder`, private as in the image, with a token.

    The first token is issued before the services start.
    """
    folder.mkdir(mode=0o750)
    environment["PUPIL_RECORDS_DATA_DIR"] = str(folder)
    environment["PUPIL_RECORDS_TOKENS_FILE"] = str(folder / "tokens.json")
    TokenStore(folder / "tokens.json").issue("subscriber", "Archive follower")


def read_variable_names() -> set[str]:
    """Return the environment variable names that the package's code reads.

    A name counts when a module that uses `os.environ` or `os.getenv` passes it
    as a string literal to a call or a subscript, e.g. `env.get("NAME")`,
    `os.environ["NAME"]` or `_env_int("NAME", 2)`.
    """
    names: set[str] = set()
    for folder in ("services", "shared"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            if "environ" in source or "getenv" in source:
                names |= _names_passed_in(ast.parse(source))
    return names


def _names_passed_in(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            candidates = list(node.args)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            candidates = [node.slice]
        else:
            continue
        for candidate in candidates:
            if (
                isinstance(candidate, ast.Constant)
                and isinstance(candidate.value, str)
                and ENV_NAME.match(candidate.value)
            ):
                names.add(candidate.value)
    return names


def seconds(duration: str | int) -> float:
    """Convert a compose duration such as `1m30s` or `25s` to seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(amount) * units[unit] for amount, unit in parts)


@pytest.fixture
def gunicorn_conf_fresh() -> Iterator[None]:
    """Import the gunicorn settings module anew in the test and forget it after.

    Its settings are read from the environment when it is imported.
    """
    name = "services.gunicorn_conf"
    saved = sys.modules.pop(name, None)
    yield
    sys.modules.pop(name, None)
    if saved is not None:
        sys.modules[name] = saved


def load_gunicorn(
    command: list[str], environment: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> WSGIApplication:
    """Parse a gunicorn command line with gunicorn itself, in `environment`."""
    for name in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", list(command))
    return WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]")


# ------------------------------------------------------------ file and names


def test_compose_file_parses(raw_compose: dict[str, Any]) -> None:
    assert isinstance(raw_compose.get("services"), dict)


def test_compose_has_the_five_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", *APP_SERVICES}


def test_compose_interpolation_has_defaults(raw_compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    bare = re.findall(r"\$(?!\$|\{)[A-Za-z_]", text.replace("$$", ""))
    assert bare == [], "write ${NAME:-default}, not $NAME"
    for match in INTERPOLATION.finditer(text):
        assert match["default"], f"${{{match['name']}}} has no default"


# ------------------------------------------------------------------- images


def test_app_services_share_one_image(compose: dict[str, Any]) -> None:
    images = {compose["services"][name].get("image") for name in APP_SERVICES}
    assert len(images) == 1
    assert None not in images


def test_app_image_builds_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        build = compose["services"][name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile"
            if isinstance(build, str)
            else build.get("dockerfile", "Dockerfile")
        )
        assert (ROOT / context / dockerfile).is_file(), name


def test_postgres_uses_version_15(compose: dict[str, Any]) -> None:
    assert compose["services"]["postgres"]["image"] == "postgres:15"


# ----------------------------------------------------------------- commands


def console_scripts() -> dict[str, str]:
    """Return the console scripts that pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = project["project"]["scripts"]
    return scripts


def resolve_click_command(words: list[str]) -> click.Command:
    """Walk the `pupil-records` click group down `words` to a leaf command."""
    command: click.Command = cli_module.cli
    context = click.Context(command, info_name="pupil-records")
    for word in words:
        assert isinstance(command, click.Group), f"{word!r} follows a leaf command"
        subcommand = command.get_command(context, word)
        assert subcommand is not None, f"pupil-records has no command {word!r}"
        command = subcommand
        context = click.Context(command, info_name=word, parent=context)
    assert not isinstance(command, click.Group), f"{words} names a group"
    # Parsing no further arguments fails if the command requires any.
    command.make_context(words[-1], [], parent=context.parent)
    return command


@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_worker_command_is_a_cli_command(name: str, compose: dict[str, Any]) -> None:
    script, *words = compose["services"][name]["command"]
    target = console_scripts().get(script)
    assert target == "services.cli:main", f"{script} is not the package's script"

    module_name, function_name = target.split(":")
    assert callable(getattr(importlib.import_module(module_name), function_name))
    resolve_click_command(words)


def test_worker_commands_are_the_two_followers(compose: dict[str, Any]) -> None:
    commands = {name: compose["services"][name]["command"] for name in WORKER_SERVICES}
    assert commands["records-projector"][1:] == ["records", "project"]
    assert commands["archive-follower"][1:] == ["archive", "follow"]


def test_console_script_is_installed() -> None:
    installed = importlib.metadata.entry_points(group="console_scripts")
    assert installed["pupil-records"].value == console_scripts()["pupil-records"]


def test_gunicorn_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = [
        re.split(r"[<>=\[ ;]", item)[0].lower()
        for item in project["project"]["dependencies"]
    ]
    assert "gunicorn" in names
    installed = importlib.metadata.entry_points(group="console_scripts")
    assert installed["gunicorn"].value.startswith("gunicorn.")


@pytest.mark.parametrize("name", WEB_SERVICES)
def test_web_command_loads_the_app_factory(
    name: str,
    compose: dict[str, Any],
    secrets_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gunicorn_conf_fresh: None,
) -> None:
    service = compose["services"][name]
    command = service["command"]
    assert command[0] == "gunicorn"
    environment = container_environment(service, secrets_dir)
    prepare_data_dir(environment, tmp_path / "data")

    server = load_gunicorn(command, environment, monkeypatch)
    module_name, _, factory = server.app_uri.partition(":")
    assert factory == "create_app()"
    assert callable(importlib.import_module(module_name).create_app)

    app = server.load()
    assert isinstance(app, Flask)
    health_path = urlsplit(service["healthcheck"]["test"][-1]).path
    assert app.test_client().get(health_path).status_code == 200


@pytest.mark.parametrize("name", WEB_SERVICES)
def test_web_command_uses_the_config_module(
    name: str,
    compose: dict[str, Any],
    secrets_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    gunicorn_conf_fresh: None,
) -> None:
    service = compose["services"][name]
    environment = container_environment(service, secrets_dir)
    config = load_gunicorn(service["command"], environment, monkeypatch).cfg

    assert "--preload" not in service["command"]
    assert config.preload_app is False
    assert config.accesslog == "-"
    assert config.bind == ["0.0.0.0:8000"]
    assert config.workers == int(environment["WEB_CONCURRENCY"])
    assert config.threads == int(environment["PUPIL_RECORDS_THREADS"])
    assert config.worker_class_str == "gthread"
    assert config.proc_name == name


@pytest.mark.parametrize("name", WEB_SERVICES)
def test_web_workers_come_from_interpolation(
    name: str, raw_compose: dict[str, Any]
) -> None:
    environment = raw_compose["services"][name]["environment"]
    for variable in ("WEB_CONCURRENCY", "PUPIL_RECORDS_THREADS"):
        assert INTERPOLATION.fullmatch(str(environment[variable])), variable


@pytest.mark.parametrize("name", WEB_SERVICES)
def test_web_stop_outlasts_graceful_timeout(
    name: str,
    compose: dict[str, Any],
    secrets_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    gunicorn_conf_fresh: None,
) -> None:
    service = compose["services"][name]
    environment = container_environment(service, secrets_dir)
    config = load_gunicorn(service["command"], environment, monkeypatch).cfg
    assert seconds(service["stop_grace_period"]) > config.graceful_timeout


@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_worker_stop_outlasts_its_timeout(name: str, compose: dict[str, Any]) -> None:
    grace = seconds(compose["services"][name]["stop_grace_period"])
    assert grace > cli_module.WORKER_STOP_TIMEOUT_SECONDS


# -------------------------------------------------------------- environment


def test_code_reads_the_known_variables() -> None:
    names = read_variable_names()
    for expected in ("RECORDS_DATABASE_URL", "ARCHIVE_FEED_TOKEN", "WEB_CONCURRENCY"):
        assert expected in names


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_variable_is_read_by_code(name: str, compose: dict[str, Any]) -> None:
    environment = service_environment(compose["services"][name])
    # The next test shows that the secret file variables are read.
    secret_files = set(secret_files_in(environment))
    unknown = set(environment) - read_variable_names() - secret_files
    assert unknown == set(), f"{name} sets variables that nothing reads"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_secret_file_variables_are_read(
    name: str, compose: dict[str, Any], secrets_dir: Path
) -> None:
    service = compose["services"][name]
    variables = secret_files_in(service_environment(service))
    assert variables, f"{name} reads no secret file"
    for variable in variables:
        environment = container_environment(service, secrets_dir)
        missing = secrets_dir / f"missing-{variable.lower()}"
        environment[variable] = str(missing)
        with pytest.raises(ConfigurationError) as error:
            start_service(name, environment)
        assert str(missing) in str(error.value), variable


def test_postgres_variables_are_the_images(compose: dict[str, Any]) -> None:
    environment = service_environment(compose["services"]["postgres"])
    assert set(environment) == {"POSTGRES_PASSWORD_FILE"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_runs_in_production_mode(
    name: str, compose: dict[str, Any], secrets_dir: Path
) -> None:
    environment = container_environment(compose["services"][name], secrets_dir)
    assert start_service(name, environment).production is True


@pytest.mark.parametrize("name", RECORDS_SERVICES)
def test_records_services_load_the_master_key(
    name: str, compose: dict[str, Any], secrets_dir: Path
) -> None:
    environment = container_environment(compose["services"][name], secrets_dir)
    key = load_master_key(Settings.from_env(environment))
    assert key.to_base64() == SECRET_VALUES["master_key"]


@pytest.mark.parametrize("name", RECORDS_SERVICES)
def test_records_services_need_the_master_key(
    name: str, compose: dict[str, Any], secrets_dir: Path
) -> None:
    key_file = secrets_dir / "master_key"
    key_file.unlink()
    environment = container_environment(compose["services"][name], secrets_dir)
    with pytest.raises(ConfigurationError, match="no master key in production mode"):
        start_service(name, environment)
    assert not key_file.exists(), "production mode generated a master key"


@pytest.mark.parametrize("name", RECORDS_SERVICES)
def test_records_services_reach_postgres(
    name: str, compose: dict[str, Any], secrets_dir: Path
) -> None:
    environment = container_environment(compose["services"][name], secrets_dir)
    store = eventsourcing_env(Settings.from_env(environment).records_database_url)
    assert store["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert store["POSTGRES_HOST"] == "postgres"
    assert store["POSTGRES_PASSWORD"] == SECRET_VALUES["records_db_password"]


@pytest.mark.parametrize("name", ARCHIVE_SERVICES)
def test_archive_services_reach_postgres(
    name: str, compose: dict[str, Any], secrets_dir: Path
) -> None:
    environment = container_environment(compose["services"][name], secrets_dir)
    store = eventsourcing_env(Settings.from_env(environment).archive_database_url)
    assert store["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert store["POSTGRES_HOST"] == "postgres"
    assert store["POSTGRES_PASSWORD"] == SECRET_VALUES["archive_db_password"]


def test_services_use_separate_databases(compose: dict[str, Any]) -> None:
    records = {
        service_environment(compose["services"][name])["RECORDS_DATABASE_URL"]
        for name in RECORDS_SERVICES
    }
    archive = {
        service_environment(compose["services"][name])["ARCHIVE_DATABASE_URL"]
        for name in ARCHIVE_SERVICES
    }
    assert len(records) == 1
    assert len(archive) == 1
    records_url, archive_url = make_url(records.pop()), make_url(archive.pop())
    assert records_url.database != archive_url.database
    assert records_url.username != archive_url.username


def test_master_key_only_in_records_services(compose: dict[str, Any]) -> None:
    holders = {
        name
        for name, service in compose["services"].items()
        if "master_key" in service_secrets(service)
    }
    assert holders == set(RECORDS_SERVICES)


def test_follower_has_feed_url_and_token(
    compose: dict[str, Any], secrets_dir: Path
) -> None:
    environment = container_environment(
        compose["services"]["archive-follower"], secrets_dir
    )
    settings = Settings.from_env(environment)
    assert settings.records_url == "http://records-web:8000"
    assert settings.archive_feed_token == SECRET_VALUES["archive_feed_token"]


def test_feed_url_matches_records_web(
    compose: dict[str, Any], secrets_dir: Path
) -> None:
    follower = service_environment(compose["services"]["archive-follower"])
    records_web = service_environment(compose["services"]["records-web"])
    feed = urlsplit(follower["ARCHIVE_RECORDS_URL"])
    _, _, bind_port = records_web["PUPIL_RECORDS_BIND"].rpartition(":")
    assert feed.hostname == "records-web"
    assert feed.port == int(bind_port)


def test_services_share_one_time_zone(
    compose: dict[str, Any], secrets_dir: Path
) -> None:
    zones = {
        Settings.from_env(
            container_environment(compose["services"][name], secrets_dir)
        ).timezone.key
        for name in APP_SERVICES
    }
    assert zones == {"Europe/Moscow"}


def test_token_file_is_on_the_shared_volume(
    compose: dict[str, Any], secrets_dir: Path
) -> None:
    for name in WEB_SERVICES:
        service = compose["services"][name]
        settings = Settings.from_env(container_environment(service, secrets_dir))
        mounts = named_volume_mounts(service)
        assert any(
            settings.tokens_file.is_relative_to(target) for target in mounts.values()
        ), f"{name} keeps its token file outside a named volume"
    targets = {
        tuple(sorted(named_volume_mounts(compose["services"][name]).items()))
        for name in WEB_SERVICES
    }
    assert len(targets) == 1, "the web services mount different token volumes"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_data_dir_is_a_named_volume(
    name: str, compose: dict[str, Any], secrets_dir: Path
) -> None:
    service = compose["services"][name]
    settings = Settings.from_env(container_environment(service, secrets_dir))
    assert str(settings.data_dir) in named_volume_mounts(service).values()


# ------------------------------------------------------------------ secrets


def test_no_plaintext_secret_in_environment(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for variable, value in service_environment(service).items():
            if SECRET_WORDS.search(variable):
                assert variable.endswith("_FILE"), f"{name}: {variable} is inline"
                assert value.startswith(SECRETS_MOUNT), f"{name}: {variable}"
            if "://" in value:
                userinfo, _, _ = urlsplit(value).netloc.rpartition("@")
                assert ":" not in userinfo, f"{name}: {variable} carries a password"


def test_no_plaintext_secret_in_file() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for value in SECRET_VALUES.values():
        assert value not in text
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URL carries a password"
    assert not re.search(r"^\s*POSTGRES_PASSWORD\s*:", text, re.MULTILINE)


def test_secret_files_are_mounted_secrets(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        environment = service_environment(service)
        mounted = service_secrets(service)
        for variable, path in secret_files_in(environment).items():
            assert path.removeprefix(SECRETS_MOUNT) in mounted, f"{name}: {variable}"


def test_referenced_secrets_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("secrets") or {})
    for name, service in compose["services"].items():
        assert service_secrets(service) <= declared, name


def test_secrets_come_from_the_secrets_dir(
    raw_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    for name, secret in compose["secrets"].items():
        assert secret["file"] == f"./docker/secrets/{name}"
        raw_file = raw_compose["secrets"][name]["file"]
        assert raw_file.startswith("${PUPIL_RECORDS_SECRETS_DIR:-"), name


def test_secrets_dir_is_ignored_by_git() -> None:
    rules = (ROOT / "docker" / "secrets" / ".gitignore").read_text(encoding="utf-8")
    lines = [line for line in rules.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"


def test_init_secrets_creates_every_secret(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    run_init_secrets(folder)

    assert {path.name for path in folder.iterdir()} == set(compose["secrets"])
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in compose["secrets"]:
        content = (folder / name).read_text(encoding="utf-8")
        if name.endswith("_password"):
            assert re.fullmatch(r"[A-Za-z0-9]{40}\n", content), name
        elif name == "master_key":
            assert re.fullmatch(r"[A-Za-z0-9+/]{43}=\n", content), name
            assert (folder / name).stat().st_mode & 0o777 == MASTER_KEY_MODE
        else:
            assert content == "", f"{name} is filled by token issue"


def test_init_secrets_keeps_existing_files(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "records_db_password").write_text("chosen\n", encoding="utf-8")
    run_init_secrets(folder)
    key = (folder / "master_key").read_text(encoding="utf-8")
    run_init_secrets(folder)
    assert (folder / "records_db_password").read_text(encoding="utf-8") == "chosen\n"
    assert (folder / "master_key").read_text(encoding="utf-8") == key


def test_generated_secrets_pass_production_checks(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    run_init_secrets(folder)
    # The files are mounted one by one into the image's /run/secrets.
    folder.chmod(image_secrets_mode())
    service = compose["services"]["records-web"]
    environment = container_environment(service, folder)
    prepare_data_dir(environment, tmp_path / "data")

    settings = start_service("records-web", environment)
    assert production_problems(settings, "records") == []


def test_postgres_gets_the_init_script_secrets(compose: dict[str, Any]) -> None:
    mounted = service_secrets(compose["services"]["postgres"])
    for script in INIT_SCRIPT_DIR.glob("*.sh"):
        read = set(re.findall(r'"\$secrets_dir/(\w+)"', script.read_text()))
        assert read, f"{script.name} reads no secret"
        assert read <= mounted, script.name


def test_postgres_password_comes_from_secret(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    environment = service_environment(postgres)
    secret = environment["POSTGRES_PASSWORD_FILE"].removeprefix(SECRETS_MOUNT)
    assert secret in service_secrets(postgres)


# ------------------------------------------------------------------ volumes


def named_volume_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Return the named volumes of a service and where they are mounted."""
    mounts = {}
    for item in service.get("volumes") or []:
        if isinstance(item, str):
            source, _, rest = item.partition(":")
            target = rest.split(":")[0]
        else:
            if item.get("type", "volume") != "volume":
                continue
            source, target = item.get("source", ""), item["target"]
        if source and not source.startswith((".", "/", "~", "$")):
            mounts[source] = target
    return mounts


def bind_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Return the host paths that a service mounts and where."""
    mounts = {}
    for item in service.get("volumes") or []:
        if isinstance(item, str) and item.startswith((".", "/")):
            source, target = item.split(":")[:2]
            mounts[source] = target
    return mounts


def test_referenced_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in compose["services"].values():
        used |= set(named_volume_mounts(service))
    assert used <= declared
    assert declared <= used, "a declared volume is not used"


def test_postgres_data_is_a_named_volume(compose: dict[str, Any]) -> None:
    mounts = named_volume_mounts(compose["services"]["postgres"])
    assert "/var/lib/postgresql/data" in mounts.values()


def test_init_scripts_are_mounted(compose: dict[str, Any]) -> None:
    mounts = bind_mounts(compose["services"]["postgres"])
    sources = [
        source
        for source, target in mounts.items()
        if target == "/docker-entrypoint-initdb.d"
    ]
    assert len(sources) == 1
    folder = ROOT / sources[0]
    assert any(path.suffix in (".sh", ".sql") for path in folder.iterdir())


def test_app_services_mount_no_host_paths(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert bind_mounts(compose["services"][name]) == {}, name


# ------------------------------------------------- health, order and restart


@pytest.mark.parametrize("name", WEB_SERVICES)
def test_web_healthcheck_requests_healthz(name: str, compose: dict[str, Any]) -> None:
    service = compose["services"][name]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "pupil-records-healthcheck"
    url = urlsplit(test[-1])
    assert url.path == "/healthz"
    _, _, bind_port = service_environment(service)["PUPIL_RECORDS_BIND"].rpartition(":")
    assert url.port == int(bind_port)


def test_postgres_healthcheck_uses_pg_isready(compose: dict[str, Any]) -> None:
    test = compose["services"]["postgres"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "pg_isready"
    assert "--host=127.0.0.1" in test


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert "postgres" in depends_on, name
        for target, rule in depends_on.items():
            assert rule["condition"] == "service_healthy", f"{name} -> {target}"
            assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_follower_waits_for_records_web(compose: dict[str, Any]) -> None:
    assert "records-web" in compose["services"]["archive-follower"]["depends_on"]


def test_every_service_restarts(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        policy = service.get("restart")
        assert policy in ("always", "unless-stopped", "on-failure"), name


@pytest.mark.parametrize("name", WEB_SERVICES)
def test_web_port_is_published(name: str, compose: dict[str, Any]) -> None:
    (mapping,) = compose["services"][name]["ports"]
    host, _, container_port = str(mapping).rpartition(":")
    assert container_port == "8000"
    assert host.startswith("127.0.0.1:"), "publish on the loopback by default"


def test_workers_publish_no_ports(compose: dict[str, Any]) -> None:
    for name in WORKER_SERVICES:
        assert "ports" not in compose["services"][name], name
