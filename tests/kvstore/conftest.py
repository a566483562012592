"""Fixtures for the kvstore tests: a real etcd server and a backend harness.

The ``kv`` fixture is parametrized over the embedded memory backend and a real etcd
server, so one behavioural suite runs against both. etcd tests are skipped with a
reason when the binary is absent, unless ``KUBEMIRROR_REQUIRE_ETCD=1`` (CI), in
which case they fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubemirror.kvstore import backend as backend_mod
from kubemirror.kvstore import etcd, etcd_server, key, memory


def _require_etcd() -> str:
    binary = etcd_server.find_etcd_binary()
    if binary is None:
        reason = ("etcd binary not found (run `kubemirror envtest setup`, which builds it, set "
                  "KUBEMIRROR_ETCD, or apt-get install etcd-server)")
        if os.environ.get("KUBEMIRROR_REQUIRE_ETCD") == "1":
            pytest.fail(f"KUBEMIRROR_REQUIRE_ETCD=1 but {reason}")
        pytest.skip(reason)
    try:
        import aetcd  # noqa: F401
    except ImportError:
        if os.environ.get("KUBEMIRROR_REQUIRE_ETCD") == "1":
            pytest.fail("KUBEMIRROR_REQUIRE_ETCD=1 but aetcd is not installed")
        pytest.skip("aetcd not installed (pip install 'kubemirror[etcd]')")
    return binary


@pytest.fixture
def etcd_binary() -> str:
    """The etcd executable (skips, or fails under KUBEMIRROR_REQUIRE_ETCD=1, if absent)."""
    return _require_etcd()


@pytest.fixture(scope="session")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[etcd_server.EtcdServer]:
    """One etcd server for the whole session (tests wipe the keyspace first)."""
    binary = _require_etcd()
    server = etcd_server.EtcdServer(tmp_path_factory.mktemp("etcd-shared"), binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def etcd_server_fn(tmp_path: Any) -> Iterator[etcd_server.EtcdServer]:
    """A private etcd server for tests that kill or restart it."""
    binary = _require_etcd()
    server = etcd_server.EtcdServer(tmp_path / "etcd", binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    within: float = 10.0,
    message: str | Callable[[], str] = "condition not met",
) -> None:
    """Poll ``predicate`` until true; fail the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            text = message() if callable(message) else message
            pytest.fail(f"timed out after {within}s: {text}")
        await asyncio.sleep(0.01)


@dataclass
class Harness:
    """Creates backends on one keyspace and acts on it as a third party."""

    kind: str
    server: memory.MemoryKVServer | None = None
    etcd: etcd_server.EtcdServer | None = None
    backends: list[backend_mod.Backend] = field(default_factory=list)
    _admin: backend_mod.Backend | None = None

    def new_backend(self, *, lease_ttl: float = 15.0, name: str = "") -> backend_mod.Backend:
        """A new client session (closed at teardown)."""
        made: backend_mod.Backend
        if self.kind == "memory":
            made = memory.MemoryBackend(self.server, lease_ttl=lease_ttl, name=name or "memory")
        else:
            assert self.etcd is not None
            made = etcd.EtcdBackend(self.etcd.endpoint, lease_ttl=lease_ttl, name=name)
        self.backends.append(made)
        return made

    @property
    def admin(self) -> backend_mod.Backend:
        """A separate session standing for "someone else" (etcdctl, another agent)."""
        if self._admin is None:
            self._admin = self.new_backend(name="admin")
        return self._admin

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke a lease from outside its session, as an operator or a crash would."""
        if self.server is not None:
            assert self.server.revoke(lease_id)
            return
        assert self.etcd is not None
        import aetcd

        async with aetcd.Client(host=self.etcd.host, port=self.etcd.client_port) as client:
            await client.revoke_lease(lease_id)

    async def close(self) -> None:
        for made in self.backends:
            await made.close()


async def _wipe_etcd(server: etcd_server.EtcdServer) -> None:
    import aetcd

    async with aetcd.Client(host=server.host, port=server.client_port) as client:
        await client.delete_range(b"\0", b"\0")


@pytest.fixture(
    params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)],
)
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A backend harness over the memory backend and over a real etcd server."""
    if request.param == "memory":
        harness = Harness("memory", server=memory.MemoryKVServer())
    else:
        server: etcd_server.EtcdServer = request.getfixturevalue("shared_etcd")
        await _wipe_etcd(server)
        harness = Harness("etcd", etcd=server)
    try:
        yield harness
    finally:
        await harness.close()


@dataclass
class Recorder:
    """An observer recording events and the resulting state, by key name."""

    events: list[tuple[str, str, bytes]] = field(default_factory=list)
    state: dict[str, bytes] = field(default_factory=dict)

    def on_update(self, k: key.Key) -> None:
        value = k.marshal()
        self.events.append(("update", k.get_key_name(), value))
        self.state[k.get_key_name()] = value

    def on_delete(self, k: key.NamedKey) -> None:
        self.events.append(("delete", k.get_key_name(), b""))
        self.state.pop(k.get_key_name(), None)

    def deletes(self) -> list[str]:
        return [name for kind, name, _ in self.events if kind == "delete"]

    def updates(self) -> list[str]:
        return [name for kind, name, _ in self.events if kind == "update"]
