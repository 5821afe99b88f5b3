"""The pooler's [databases] entry repointed in its file: only host, port and dbname change, nothing leaks."""

from __future__ import annotations

import pytest

from ferry.hooks.pooler import PoolerError, repoint_config, where

CONFIG = """;; the app's pooler
[databases]
; saas = host=old-primary port=5432 dbname=saas
saas = host=10.0.0.5 port=5432 dbname=saas password='s3cr''et' pool_size=40\r
reports = host=10.0.0.5 dbname=reports

[pgbouncer]
listen_port = 6432
saas = not-a-database-entry
"""


def test_only_the_entry_moves_and_every_other_setting_stays():
    moved = repoint_config(CONFIG, "saas", "db.rds.example.com", 5433, "saas_prod")
    lines = moved.splitlines(keepends=True)
    assert lines[3] == (
        "saas = host=db.rds.example.com port=5433 dbname=saas_prod password='s3cr''et' pool_size=40\r\n"
    )  # the line's own ending (CRLF) kept
    assert lines[2] == "; saas = host=old-primary port=5432 dbname=saas\n"  # a comment is not the entry
    assert lines[4] == "reports = host=10.0.0.5 dbname=reports\n"
    assert lines[-1] == "saas = not-a-database-entry\n"  # the [pgbouncer] section is not [databases]
    back = repoint_config(moved, "saas", "10.0.0.5", 5432, "saas")
    assert back == CONFIG


def test_settings_the_entry_lacks_are_added():
    moved = repoint_config(CONFIG, "reports", "db.rds.example.com", 5432, "reports")
    assert "reports = host=db.rds.example.com dbname=reports port=5432\n" in moved


def test_a_missing_entry_is_named_with_the_fix():
    with pytest.raises(PoolerError, match="no \\[databases\\] entry billing .*source.pooler.database"):
        repoint_config(CONFIG, "billing", "h", 5432, "billing")


def test_what_is_said_of_an_entry_holds_no_password():
    entry = {"host": "h", "port": 5432, "dbname": "d", "password": "s3cret", "paused": True}
    assert where(entry) == {"host": "h", "port": 5432, "dbname": "d"}
