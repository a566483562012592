"""kubemirror.testing.postgres and the plugin's PostgreSQL fixtures: a real server is
started, killed and removed; without binaries the fixtures skip, or fail under
KUBEMIRROR_REQUIRE_POSTGRES=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from kubemirror import errors
from kubemirror.testing.postgres import (
    POSTGRES_BIN_ENV,
    REQUIRE_POSTGRES_ENV,
    PostgresServer,
    find_postgres_bin,
)


@pytest.mark.postgres
def test_server_starts_answers_dies_and_is_removed(postgres_server: PostgresServer) -> None:
    bin_dir = find_postgres_bin()
    assert bin_dir is not None
    server = PostgresServer(bin_dir).start()
    try:
        with psycopg.connect(server.dsn) as conn:
            row = conn.execute("SHOW fsync").fetchone()
            assert row == ("off",)
        data = server._dir
        assert data is not None
        assert data.exists()
        server.kill()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn, connect_timeout=2)
    finally:
        server.stop()
    assert not data.exists()
    server.stop()  # idempotent


def test_missing_binaries_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=POSTGRES_BIN_ENV):
        PostgresServer(tmp_path)


@pytest.mark.parametrize(
    ("require", "outcome"), [("", "1 skipped"), ("1", "1 error")], ids=["skip", "required"]
)
def test_fixture_without_postgres_skips_or_fails(
    tmp_path: Path, require: str, outcome: str
) -> None:
    (tmp_path / "test_uses_pg.py").write_text(
        "def test_uses(postgres_dsn: str) -> None:\n    assert postgres_dsn\n"
    )
    env = dict(os.environ)
    env[POSTGRES_BIN_ENV] = str(tmp_path / "nowhere")
    env[REQUIRE_POSTGRES_ENV] = require
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert outcome in result.stdout, result.stdout
    assert "no PostgreSQL server" in result.stdout
