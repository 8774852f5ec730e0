"""Secrets given as files: the feed token and database passwords."""

from __future__ import annotations

import pytest

from shared.config import ConfigurationError, Settings


def test_feed_token_read_from_file(tmp_path):
    secret = tmp_path / "feed-token"
    secret.write_text("abc123\r\n", encoding="utf-8")

    settings = Settings.from_env(
        {"ARCHIVE_FEED_TOKEN_FILE": str(secret)}, data_dir=tmp_path
    )

    assert settings.archive_feed_token == "abc123"


def test_feed_token_variable_wins_over_file(tmp_path):
    secret = tmp_path / "feed-token"
    secret.write_text("from-file\n", encoding="utf-8")
    env = {"ARCHIVE_FEED_TOKEN": "direct", "ARCHIVE_FEED_TOKEN_FILE": str(secret)}

    settings = Settings.from_env(env, data_dir=tmp_path)

    assert settings.archive_feed_token == "direct"


def test_database_password_added_to_url(tmp_path):
    secret = tmp_path / "records-password"
    secret.write_text("p@ss/word\n", encoding="utf-8")
    env = {
        "RECORDS_DATABASE_URL": "postgresql://records@db:5432/records",
        "RECORDS_DATABASE_PASSWORD_FILE": str(secret),
    }

    settings = Settings.from_env(env, data_dir=tmp_path)

    assert settings.records_database_url == (
        "postgresql://records:p%40ss%2Fword@db:5432/records"
    )


def test_missing_secret_file_is_clear_error(tmp_path):
    env = {"ARCHIVE_FEED_TOKEN_FILE": str(tmp_path / "absent")}

    with pytest.raises(ConfigurationError, match="ARCHIVE_FEED_TOKEN_FILE"):
        Settings.from_env(env, data_dir=tmp_path)


def test_empty_secret_file_is_clear_error(tmp_path):
    secret = tmp_path / "empty"
    secret.write_text("\n", encoding="utf-8")

    with pytest.raises(ConfigurationError, match="is empty"):
        Settings.from_env({"ARCHIVE_FEED_TOKEN_FILE": str(secret)}, data_dir=tmp_path)


def test_password_file_with_password_in_url_rejected(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("x\n", encoding="utf-8")
    env = {
        "ARCHIVE_DATABASE_URL": "postgresql://archive:inline@db/archive",
        "ARCHIVE_DATABASE_PASSWORD_FILE": str(secret),
    }

    with pytest.raises(ConfigurationError, match="already has a password"):
        Settings.from_env(env, data_dir=tmp_path)
