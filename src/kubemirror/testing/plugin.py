"""The pytest plugin: fixtures for kubemirror's embedded API server and a real kube-apiserver.

Loaded by pytest through the ``pytest11`` entry point. Fixtures: ``kube_storage`` (a
fresh ``MemoryStorage``) and ``kube_api_server`` (a started ``KubeApiServer`` on a free
127.0.0.1 port, stopped after the test); ``envtest_assets`` (the real binaries, see
``kubemirror.envtest``) and ``real_kube_apiserver`` (one real etcd + kube-apiserver for
the whole session, an ``EnvTest``). Those two skip the test with the reason when no
binaries can be found or built, and fail it instead when
``KUBEMIRROR_REQUIRE_REAL_APISERVER=1``. ``postgres_server`` (one throw-away
PostgreSQL for the session, ``kubemirror.testing.postgres.PostgresServer``) and
``postgres_dsn`` (a fresh, empty database on it per test) skip likewise, or fail
under ``KUBEMIRROR_REQUIRE_POSTGRES=1``. When a collected test uses them and the
binaries are missing, they are built with Go once, after collection and before the
first test (so no test timeout applies). The plugin stays import-light: the storage,
the servers and aiohttp are imported only when a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from kubemirror.testing import REQUIRE_REAL_APISERVER_ENV, new_storage

if TYPE_CHECKING:
    from kubemirror.envtest import Assets, EnvTest
    from kubemirror.multicluster.server import KubeApiServer
    from kubemirror.multicluster.storage import MemoryStorage
    from kubemirror.testing.postgres import PostgresServer

__all__ = [
    "envtest_assets",
    "kube_api_server",
    "kube_storage",
    "postgres_dsn",
    "postgres_server",
    "pytest_collection_finish",
    "real_kube_apiserver",
]

_REAL_FIXTURES = frozenset({"envtest_assets", "real_kube_apiserver"})


@pytest.fixture
def kube_storage() -> MemoryStorage:
    """A fresh ``MemoryStorage`` with the built-in resource types registered."""
    return new_storage()


@pytest_asyncio.fixture
async def kube_api_server(kube_storage: MemoryStorage) -> AsyncIterator[KubeApiServer]:
    """A started ``KubeApiServer`` over ``kube_storage`` on a free 127.0.0.1 port."""
    from kubemirror.multicluster.server import KubeApiServer

    async with KubeApiServer(kube_storage) as server:
        yield server


_build_failure: str | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the real binaries (first time only) if a collected test needs them."""
    global _build_failure
    if not any(_REAL_FIXTURES & set(getattr(item, "fixturenames", ()))
               for item in session.items):
        return
    from kubemirror import errors
    from kubemirror.envtest import find_assets, setup_assets

    try:
        if find_assets() is not None:
            return
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")

        def log(line: str) -> None:
            if reporter is not None:
                reporter.write_line(f"kubemirror envtest: {line}")

        setup_assets(log=log)
    except (errors.CommandError, errors.ConfigError) as exc:
        _build_failure = str(exc)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_REAL_APISERVER_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_REAL_APISERVER_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def envtest_assets() -> Assets:
    """The real kube-apiserver and etcd binaries (``kubemirror.envtest.Assets``)."""
    from kubemirror import errors
    from kubemirror.envtest import pki, setup_assets

    try:
        pki.require_cryptography()
        return setup_assets(build=False)
    except (errors.CommandError, errors.ConfigError) as exc:
        _skip_or_fail(f"no real kube-apiserver: {_build_failure or exc}")
        raise  # pragma: no cover - skip and fail raise


@pytest.fixture(scope="session")
def real_kube_apiserver(envtest_assets: Assets) -> Iterator[EnvTest]:
    """A real etcd and kube-apiserver shared by the session (``kubemirror.envtest.EnvTest``).

    Use ``.client_config`` (admin), ``.kubeconfig_path`` or ``.url``; give each test
    its own namespace, since the server is shared.
    """
    from kubemirror.envtest import EnvTest

    env = EnvTest(envtest_assets)
    env.start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server from the distribution's binaries, for the whole session.

    Skips the test with the reason when PostgreSQL is not installed (fails instead
    under ``KUBEMIRROR_REQUIRE_POSTGRES=1``); the ``psycopg`` driver is required too.
    """
    from kubemirror import errors
    from kubemirror.testing.postgres import REQUIRE_POSTGRES_ENV, PostgresServer

    def skip_or_fail(reason: str) -> None:
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_POSTGRES_ENV}=1)", pytrace=False)
        pytest.skip(reason)

    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("no PostgreSQL driver: pip install 'kubemirror[postgres]'")
    try:
        server = PostgresServer().start()
    except (errors.ConfigError, errors.CommandError) as exc:
        skip_or_fail(f"no PostgreSQL server: {exc}")
        raise  # pragma: no cover - skip and fail raise
    try:
        yield server
    finally:
        server.stop()


_database_serial = 0


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """The connection string of a fresh, empty database, dropped after the test."""
    import psycopg

    global _database_serial
    _database_serial += 1
    name = f"test_{os.getpid()}_{_database_serial}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield postgres_server.dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
