"""The `pupil-records` command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from shared.config import ConfigurationError, Settings

# Named, not __name__, because the workers run this module as __main__.
log = logging.getLogger("services.cli")

# A worker that has not returned this long after SIGTERM exits at once. Its
# batches are transactions, so an exit in the middle of one loses nothing.
WORKER_STOP_TIMEOUT_SECONDS = 5.0

CommandFunction = Callable[..., Any]


class CommandError(click.ClickException):
    """A command failed; click prints its one-line message and exits with 1."""


class _TranslatingGroup(click.Group):
    """Turns every unexpected error of a command into a one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ConfigurationError as error:
            raise CommandError(str(error)) from error
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as error:
            log.debug("command failed", exc_info=True)
            raise CommandError(_one_line(error)) from error


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    detail = lines[0] if lines else "no details"
    return f"{type(error).__name__}: {detail}"


def data_dir_option(command: CommandFunction) -> CommandFunction:
    """Add `--data-dir` to a leaf command."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder of the SQLite files, token file and logs "
        "[default: $PUPIL_RECORDS_DATA_DIR, else ./var].",
    )(command)


def load_settings(data_dir: Path | None) -> Settings:
    """Build the settings from the environment; `--data-dir` overrides it."""
    try:
        return Settings.from_env(data_dir=data_dir)
    except ConfigurationError as error:
        raise CommandError(str(error)) from None


def configure_logging() -> None:
    """Send log records of long-running commands to standard error."""
    level = os.environ.get("PUPIL_RECORDS_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(cls=_TranslatingGroup)
def cli() -> None:
    """Event-sourced pupil records and their archive."""


# ------------------------------------------------------------------------ run


@cli.command()
@click.option(
    "--records-port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="TCP port of the records service on 127.0.0.1.",
)
@click.option(
    "--archive-port",
    type=click.IntRange(1, 65535),
    default=8001,
    show_default=True,
    help="TCP port of the archive service on 127.0.0.1.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Load the demo centre through the HTTP API once the services are "
    "ready, if the records store is empty.",
)
@data_dir_option
def run(
    records_port: int, archive_port: int, demo: bool, data_dir: Path | None
) -> None:
    """Start both services and their workers; Ctrl-C stops them."""
    from services import runner
    from shared.locks import LockHeldError

    settings = load_settings(data_dir)
    configure_logging()
    try:
        runner.run(settings, records_port, archive_port, demo)
    except LockHeldError as error:
        raise CommandError(
            f"cannot start on the data dir {settings.data_dir}: {error}"
        ) from None
    except runner.RunnerError as error:
        raise CommandError(str(error)) from None


# ---------------------------------------------------------------------- token


class RoleType(click.ParamType):
    """A role name, checked against `shared.auth.ROLES`."""

    name = "role"

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> str:
        from shared.auth import ROLES

        if value in ROLES:
            return str(value)
        self.fail(
            f"{value!r} is not a role; choose one of: {', '.join(ROLES)}", param, ctx
        )


@cli.group()
def token() -> None:
    """Issue, list and revoke bearer tokens."""


@contextmanager
def token_store(data_dir: Path | None) -> Iterator[Any]:
    """Open the token file of the settings; its errors become one-line messages."""
    from shared.auth import TokenStore, TokenStoreError

    settings = load_settings(data_dir)
    try:
        yield TokenStore(settings.tokens_file)
    except TokenStoreError as error:
        raise CommandError(str(error)) from None


@token.command("issue")
@click.option("--role", required=True, type=RoleType(), help="Role of the holder.")
@click.option(
    "--name", required=True, help='Full name of the holder, e.g. "Иванова Анна".'
)
@data_dir_option
def token_issue(role: str, name: str, data_dir: Path | None) -> None:
    """Issue a token and print it; only its hash is stored."""
    if not name.strip():
        raise click.BadParameter("must not be blank", param_hint="'--name'")
    with token_store(data_dir) as store:
        click.echo(store.issue(role, name))


@token.command("list")
@data_dir_option
def token_list(data_dir: Path | None) -> None:
    """List the issued tokens: id, role, holder and issue time."""
    with token_store(data_dir) as store:
        infos = store.list()
    for info in infos:
        click.echo(f"{info.id}\t{info.role}\t{info.name}\t{info.issued_at}")


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@data_dir_option
def token_revoke(token_id: str, data_dir: Path | None) -> None:
    """Revoke the token with this id; running services reject it at once."""
    with token_store(data_dir) as store:
        revoked = store.revoke(token_id)
    if not revoked:
        raise CommandError(
            f"no token has the id {token_id!r}; `pupil-records token list` shows them"
        )
    click.echo(f"revoked {token_id}", err=True)


# ------------------------------------------------------------ records, archive


@cli.group()
def records() -> None:
    """Commands of the records service."""


@cli.group()
def archive() -> None:
    """Commands of the archive service."""


@contextmanager
def services_stopped(settings: Settings, command: str) -> Iterator[None]:
    """Hold the data dir's services lock alone, or fail while the services run."""
    from services.runner import make_data_dir_private
    from services.runner import services_stopped as hold_services_lock
    from shared.locks import LockHeldError

    make_data_dir_private(settings.data_dir)
    try:
        with hold_services_lock(settings, f"pupil-records {command}"):
            yield
    except LockHeldError as error:
        raise CommandError(
            f"`{command}` cannot run while the services run on {settings.data_dir}: "
            f"{error}"
        ) from None


@records.command("rebuild")
@click.option(
    "--online",
    is_flag=True,
    help="Build new read-model tables while the services run and the old "
    "tables serve, then switch to them in one transaction.",
)
@data_dir_option
def records_rebuild(online: bool, data_dir: Path | None) -> None:
    """Rebuild the records read models from the event log, with progress."""
    settings = load_settings(data_dir)
    _require_event_log(settings.records_database_url, "records", "RECORDS_DATABASE_URL")
    if online:
        replayed = _rebuild_records_online(settings)
        click.echo(
            f"records read models rebuilt online ({replayed} events replayed)", err=True
        )
        return
    with services_stopped(settings, "records rebuild"):
        from services.records.projector import rebuild

        rebuild(settings, progress=True)
    click.echo("records read models rebuilt", err=True)


def _rebuild_records_online(settings: Settings) -> int:
    from services.records.rebuild import RebuildError, rebuild_online
    from services.runner import services_lock_path
    from shared.locks import LockHeldError, ProcessLock

    command = "pupil-records records rebuild --online"
    # Shared like the services' own hold, so that only an offline rebuild,
    # which takes the lock alone, keeps this one out.
    services_lock = ProcessLock(
        services_lock_path(settings), owner=command, shared=True, announce=False
    )
    try:
        with services_lock:
            return rebuild_online(settings, progress=True)
    except LockHeldError as error:
        raise CommandError(f"`records rebuild --online` cannot run: {error}") from None
    except RebuildError as error:
        raise CommandError(str(error)) from None


@archive.command("rebuild")
@data_dir_option
def archive_rebuild(data_dir: Path | None) -> None:
    """Rebuild the archive read models from the archive's own log, with progress."""
    settings = load_settings(data_dir)
    _require_event_log(settings.archive_database_url, "archive", "ARCHIVE_DATABASE_URL")
    with services_stopped(settings, "archive rebuild"):
        from services.archive.readmodels import rebuild

        rebuild(settings, progress=True)
    click.echo("archive read models rebuilt", err=True)


@cli.group("access-log")
def access_log() -> None:
    """Commands of the access log of personal-data reads (records service)."""


@access_log.command("verify")
@click.option(
    "--expect-last",
    "expected_hash",
    metavar="HASH",
    default=None,
    help="Hash of the last record printed by an earlier run and kept off this "
    "machine; exit 1 unless the chain still contains that record.",
)
@data_dir_option
def access_log_verify(expected_hash: str | None, data_dir: Path | None) -> None:
    """Check the hash chain of the access log; exit 1 at the first broken link.

    Deleting the newest records leaves an intact chain, so keep the printed
    last hash elsewhere and pass it with --expect-last on the next run. Only
    reads the database, so it may run while the services run.
    """
    settings = load_settings(data_dir)
    report = _verify_access_log(settings.records_database_url, expected_hash)
    if not report.intact:
        raise CommandError(
            f"the access log is broken at record {report.broken_at}: "
            f"{report.reason}; the {report.checked} records before it are intact"
        )
    if expected_hash is not None and not report.contains_expected:
        raise CommandError(
            f"the access log has no record with hash {expected_hash}: records "
            "were deleted from its end, or the hash is not one this log printed"
        )
    click.echo(f"access log intact: {report.checked} records checked")
    if report.last_hash is not None:
        click.echo(f"last record: {report.last_sequence} {report.last_hash}")


def _verify_access_log(url: str, expected_hash: str | None = None) -> Any:
    from sqlalchemy import inspect

    from services.records.accesslog import (
        AccessLog,
        ChainReport,
        access_log,
        verify_chain,
    )
    from shared.storage import create_sql_engine, is_memory

    if is_memory(url):
        raise CommandError("the in-memory records store has no access log to check")
    _require_sqlite_file(url, "records", "RECORDS_DATABASE_URL")
    # Parameters stay out of error messages, because they contain names and
    # purposes.
    engine = create_sql_engine(url, hide_parameters=True)
    try:
        if not inspect(engine).has_table(access_log.name):
            return ChainReport(checked=0)
        return verify_chain(AccessLog(engine, engine), expected_hash=expected_hash)
    finally:
        engine.dispose()


def _require_sqlite_file(url: str, service: str, variable: str) -> None:
    """Fail when `url` names a SQLite file that does not exist.

    Opening a missing SQLite file would create an empty database.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    database_file = Path(parsed.database)
    if not database_file.exists():
        raise CommandError(
            f"no {service} database at {database_file}; check --data-dir or {variable}"
        )


def _require_event_log(url: str, service: str, variable: str) -> None:
    """Fail unless the database at `url` has the event log of `service`.

    Only reads, so a missing database or table is not created.
    """
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from shared.storage import create_sql_engine, is_memory

    if is_memory(url):
        raise CommandError(f"the in-memory {service} store has no log to rebuild from")
    _require_sqlite_file(url, service, variable)
    parsed = make_url(url)
    # eventsourcing names the table `stored_events` on SQLite and
    # `<application name>_events` on PostgreSQL, and each application is named
    # after its service.
    if parsed.get_backend_name() == "sqlite":
        table = "stored_events"
    else:
        table = f"{service}_events"
    engine = create_sql_engine(url)
    try:
        found = inspect(engine).has_table(table)
    finally:
        engine.dispose()
    if not found:
        where = parsed.render_as_string(hide_password=True)
        raise CommandError(
            f"the {service} database {where} has no event log (table {table}); "
            f"check --data-dir or {variable}"
        )


@records.command("project")
@data_dir_option
def records_project(data_dir: Path | None) -> None:
    """Follow the records log into the read models until SIGTERM (internal)."""
    settings = load_settings(data_dir)
    from services.records.projector import run as run_projector

    run_worker("records projector", run_projector, settings)


@archive.command("follow")
@data_dir_option
def archive_follow(data_dir: Path | None) -> None:
    """Follow the records event feed into the archive until SIGTERM (internal)."""
    settings = load_settings(data_dir)
    from services.archive.follower import run as run_follower

    run_worker("archive follower", run_follower, settings)


def run_worker(
    name: str, target: Callable[[Settings, threading.Event], Any], settings: Settings
) -> None:
    """Call `target(settings, stop)` until SIGTERM or SIGINT sets `stop`."""
    configure_logging()
    stop = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set():
            log.warning("%s: second %s; exiting now", name, signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: received %s; stopping", name, signal.Signals(signum).name)
        stop.set()
        _exit_if_still_running(name, WORKER_STOP_TIMEOUT_SECONDS)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
    log.info("%s started on %s", name, settings.data_dir)
    target(settings, stop)
    log.info("%s stopped", name)


def _exit_if_still_running(name: str, timeout: float) -> None:
    def exit_late() -> None:
        log.error("%s did not stop within %.0f s; exiting", name, timeout)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(timeout, exit_late)
    timer.daemon = True
    timer.start()


def main() -> None:
    """Run the `pupil-records` command line."""
    cli(prog_name="pupil-records")


if __name__ == "__main__":
    main()
