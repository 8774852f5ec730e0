"""Dockerfile and .dockerignore: base image, user, build context, no secrets."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE_IMAGE = "python:3.11-slim"
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|CIPHER|_KEY\b", re.IGNORECASE)
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|libpq-dev|python3-dev)\b")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    arguments: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions; a stage starts at each FROM."""
    instructions: list[Instruction] = []
    pending = ""
    stage = -1
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """Return the instructions of the stage that becomes the image."""
    last = max(item.stage for item in instructions)
    return [item for item in instructions if item.stage == last]


def of_kind(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [item for item in instructions if item.keyword == keyword]


def env_names(instruction: Instruction) -> list[str]:
    """Return the names that an ENV or ARG instruction sets."""
    return re.findall(
        r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", instruction.arguments
    )


def copy_sources(instruction: Instruction) -> list[str]:
    """Return the build-context sources of a COPY, or [] for COPY --from."""
    words = instruction.arguments.split()
    if any(word.startswith("--from=") for word in words):
        return []
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


# ---------------------------------------------------- .dockerignore matching


def read_ignore_patterns() -> list[str]:
    """Return the patterns of .dockerignore in order, comments dropped."""
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _match_segments(pattern: list[str], path: list[str]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(
            _match_segments(pattern[1:], path[index:]) for index in range(len(path) + 1)
        )
    return bool(path) and (
        fnmatch.fnmatchcase(path[0], pattern[0])
        and _match_segments(pattern[1:], path[1:])
    )


def is_excluded(path: str, patterns: list[str]) -> bool:
    """Tell whether the build context leaves out `path`, as Docker decides.

    The last pattern that matches the path or one of its parent folders wins;
    a pattern starting with `!` puts the path back.
    """
    segments = path.strip("/").split("/")
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/").split("/")
        prefixes = (segments[:length] for length in range(1, len(segments) + 1))
        if any(_match_segments(pattern, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


# ------------------------------------------------------------------- tests


def test_every_stage_uses_python_slim(instructions: list[Instruction]) -> None:
    stages = of_kind(instructions, "FROM")
    assert stages
    for stage in stages:
        image = [word for word in stage.arguments.split() if not word.startswith("--")]
        assert image[0] == BASE_IMAGE


def test_image_runs_as_non_root(instructions: list[Instruction]) -> None:
    users = of_kind(final_stage(instructions), "USER")
    assert users, "the final stage sets no USER"
    user = users[-1].arguments.split(":")[0]
    assert user not in ("root", "0")


def test_user_has_a_fixed_uid(instructions: list[Instruction]) -> None:
    runs = " ".join(
        item.arguments for item in of_kind(final_stage(instructions), "RUN")
    )
    user = of_kind(final_stage(instructions), "USER")[-1].arguments.split(":")[0]
    created = re.search(rf"useradd\b.*--uid (\d+)\b.*\b{re.escape(user)}\b", runs)
    assert created is not None, f"the user {user} is not created with --uid"
    assert int(created[1]) >= 1000


def test_no_secret_is_baked_in(instructions: list[Instruction]) -> None:
    for item in of_kind(instructions, "ENV") + of_kind(instructions, "ARG"):
        for name in env_names(item):
            assert not SECRET_WORDS.search(name), f"{item.keyword} {name}"
    assert not of_kind(instructions, "ADD"), "use COPY: ADD also fetches URLs"


def test_no_compiler_is_installed(instructions: list[Instruction]) -> None:
    for item in of_kind(instructions, "RUN"):
        assert not COMPILERS.search(item.arguments), item.arguments


def test_dependencies_install_from_wheels(instructions: list[Instruction]) -> None:
    installs = [
        item.arguments
        for item in of_kind(instructions, "RUN")
        if "pip install" in item.arguments
    ]
    assert installs
    assert all("--only-binary=:all:" in command for command in installs)


def test_psycopg_comes_as_binary_wheel() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = project["project"]["dependencies"]
    assert any(item.startswith("psycopg[binary]") for item in dependencies)


def test_cmd_uses_exec_form(instructions: list[Instruction]) -> None:
    (item,) = of_kind(final_stage(instructions), "CMD")
    assert isinstance(json.loads(item.arguments), list)


def test_image_has_no_entrypoint(instructions: list[Instruction]) -> None:
    # The compose commands run as written, under the init process that
    # `init: true` adds, and the services read their secret files themselves.
    assert of_kind(instructions, "ENTRYPOINT") == []


def test_secrets_folder_is_closed_to_others(
    instructions: list[Instruction],
) -> None:
    runs = " ".join(
        item.arguments for item in of_kind(final_stage(instructions), "RUN")
    )
    found = re.search(
        r"install -d -o (\S+) -g (\S+) -m (0[0-7]{3}) /run/secrets\b", runs
    )
    assert found is not None, "the image does not create /run/secrets"
    owner, group, mode = found[1], found[2], int(found[3], 8)
    user = of_kind(final_stage(instructions), "USER")[-1].arguments
    assert owner == "root", "the service could replace the mounted secrets"
    assert group == user.partition(":")[2], "the service's group cannot read it"
    assert mode & 0o050 == 0o050, "the service cannot read its secrets"
    assert mode & 0o007 == 0, "other users can list the secrets"


def test_healthcheck_script_is_installed(instructions: list[Instruction]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    programs = {
        service["healthcheck"]["test"][1]
        for service in compose["services"].values()
        if "healthcheck" in service and service.get("image") != "postgres:15"
    }
    targets = {
        item.arguments.split()[-1]
        for item in of_kind(final_stage(instructions), "COPY")
    }
    assert programs == {"pupil-records-healthcheck"}
    assert "/usr/local/bin/pupil-records-healthcheck" in targets


def test_copied_scripts_are_executable(instructions: list[Instruction]) -> None:
    for item in of_kind(final_stage(instructions), "COPY"):
        if item.arguments.split()[-1].startswith("/usr/local/bin/"):
            assert "--chmod=0755" in item.arguments.split(), item.arguments


def test_copy_sources_exist(instructions: list[Instruction]) -> None:
    for item in of_kind(instructions, "COPY"):
        for source in copy_sources(item):
            assert (ROOT / source).exists(), source


def test_copy_sources_are_in_context(instructions: list[Instruction]) -> None:
    patterns = read_ignore_patterns()
    for item in of_kind(instructions, "COPY"):
        for source in copy_sources(item):
            assert not is_excluded(source, patterns), source


def test_package_sources_are_in_context() -> None:
    patterns = read_ignore_patterns()
    for folder in ("services", "shared"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(ROOT).as_posix()
                assert not is_excluded(relative, patterns), relative


@pytest.mark.parametrize(
    "path",
    [
        "docker/secrets/postgres_password",
        "docker/secrets/archive_feed_token",
        "var/records.sqlite",
        "var/tokens.json",
        ".venv/bin/python",
        ".git/config",
        ".env",
        "tests/unit/test_shared_auth.py",
        "services/__pycache__/cli.cpython-311.pyc",
        "shared/__pycache__/config.cpython-311.pyc",
    ],
)
def test_context_leaves_out(path: str) -> None:
    assert is_excluded(path, read_ignore_patterns())


def test_ignore_matcher_follows_last_match() -> None:
    patterns = ["*", "!keep", "keep/drop"]
    assert is_excluded("other/file", patterns)
    assert not is_excluded("keep/file", patterns)
    assert is_excluded("keep/drop/file", patterns)
    assert is_excluded("deep/a/__pycache__/x.pyc", ["**/__pycache__"])


def test_data_dir_matches_compose(instructions: list[Instruction]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    env = " ".join(item.arguments for item in of_kind(final_stage(instructions), "ENV"))
    found = re.search(r"PUPIL_RECORDS_DATA_DIR=(\S+)", env)
    assert found is not None
    data_dir = found[1]
    for name in ("records-web", "records-projector", "archive-web", "archive-follower"):
        environment = compose["services"][name]["environment"]
        assert environment["PUPIL_RECORDS_DATA_DIR"] == data_dir, name
    (workdir,) = [
        item.arguments for item in of_kind(final_stage(instructions), "WORKDIR")
    ]
    assert workdir == data_dir
