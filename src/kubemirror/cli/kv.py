"""``kubemirror kv``: list, get and watch a kvstore prefix, on etcd or an embedded demo keyspace.

Part of the ``cli`` layer, over ``kubemirror.kvstore`` (``connect``, ``Backend``)
and, for ``watch``, the ``watcher`` layer: ``kv watch`` is a ``Watcher`` with a
``KVSource`` (raw values, indexed by namespace and name), whose store is diffed
at each ``on_change`` to print the keys that changed. With ``--etcd URL[,URL...]``
(or ``--etcd-config FILE``, Cilium's format) the commands talk to a real etcd v3
cluster, with ``--cacert/--cert/--key`` for TLS and ``--user``/``--password`` for
etcd auth (``EtcdOptions``); without it they use the in-process ``MemoryBackend``,
seeded by ``DemoKeyspace`` with Cilium-style keys (nodes, identities, endpoint IPs)
that keep changing, so the commands can be tried with nothing installed. Values
print as text when they are UTF-8 (JSON compacted), else as ``base64:...``;
``-o json`` prints one JSON object per line. An etcd that does not answer in
``CONNECT_TIMEOUT`` seconds is reported as unreachable.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import sys
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kubemirror import errors, kvstore, lifecycle, watcher
from kubemirror.cli import ui
from kubemirror.stores import indexed_store

__all__ = [
    "CONNECT_TIMEOUT",
    "DEMO_PREFIX",
    "DemoKeyspace",
    "EtcdOptions",
    "KeyPrinter",
    "render_value",
    "run_get",
    "run_list",
    "run_watch",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for etcd's first answer before calling it unreachable."""

DEMO_PREFIX = "cilium/state"
"""Where the demo keyspace lives."""

_MEMORY_URL = "memory://"
_ETCD_HINT = (
    "Check the --etcd URLs (e.g. https://10.0.0.1:2379,https://10.0.0.2:2379), the TLS "
    "files (--cacert/--cert/--key) and that etcd is running"
)


@dataclass(frozen=True, slots=True)
class EtcdOptions:
    """The ``kv`` commands' etcd flags, as given (all optional)."""

    # --etcd: comma-separated endpoints (http://, https:// or host:port).
    endpoints: str | None = None
    # --etcd-config: a Cilium-style etcd config file (endpoints:, trusted-ca-file:, ...).
    config_file: Path | None = None
    # --cacert / --cert / --key: TLS files (override the config file's).
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    # --user USER[:PASSWORD] and --password, as etcdctl takes them.
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def client_config(self) -> kvstore.EtcdClientConfig | None:
        """The etcd client config, or None for the demo keyspace; ``ConfigError`` if bad."""
        given_files = any(f is not None for f in (self.cacert, self.cert, self.key))
        if self.endpoints is None and self.config_file is None:
            if given_files or self.user is not None:
                raise errors.ConfigError(
                    "TLS and auth flags need --etcd or --etcd-config", field="etcd"
                )
            return None
        if self.config_file is not None:
            base = kvstore.EtcdClientConfig.from_file(self.config_file)
            if self.endpoints is not None:
                base = kvstore.EtcdClientConfig.from_endpoints(
                    self.endpoints, ca_file=base.ca_file, cert_file=base.cert_file,
                    key_file=base.key_file, username=base.username, password=base.password,
                )
        else:
            assert self.endpoints is not None
            base = kvstore.EtcdClientConfig.from_endpoints(self.endpoints)
        username, password = base.username, base.password
        if self.user is not None:
            username, sep, inline = self.user.partition(":")
            password = inline if sep else self.password
            if password is None:
                raise errors.ConfigError(
                    "needs a password (--user USER:PASSWORD or --password)", field="user"
                )
        return kvstore.EtcdClientConfig.from_endpoints(
            [str(e) for e in base.endpoints],
            ca_file=str(self.cacert) if self.cacert else base.ca_file,
            cert_file=str(self.cert) if self.cert else base.cert_file,
            key_file=str(self.key) if self.key else base.key_file,
            username=username,
            password=password,
        )


def render_value(value: bytes) -> str:
    """UTF-8 text (JSON compacted), or ``base64:...`` for binary values."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")
    if text[:1] in "{[":
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.dumps(orjson.loads(text)).decode()
    if text.isprintable():
        return text
    return "base64:" + base64.b64encode(value).decode("ascii")


def _json_value(value: bytes) -> dict[str, Any]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(record).decode() + "\n")
    sys.stdout.flush()


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class DemoKeyspace:
    """Cilium-style keys in a kvstore, and a churn that keeps changing them.

    ``seed()`` writes nodes, security identities and endpoint IPs under
    ``DEMO_PREFIX``; ``run(stop)`` then moves endpoints around (create/delete)
    and refreshes node heartbeats (modify), ``rate`` changes per second.
    Deterministic for a ``seed``. Use from the backend's event loop.
    """

    def __init__(self, backend: kvstore.Backend, *, rate: float = 4.0, seed: int = 0) -> None:
        self.backend = backend
        self.rate = rate
        self._rng = random.Random(seed)
        self._nodes = [f"node-{zone}-{i:02d}" for zone in "abc" for i in range(1, 3)]
        self._identities = {
            10_000 + i: f"k8s:app={app};k8s:io.kubernetes.pod.namespace={ns};"
            for i, (app, ns) in enumerate(
                (app, ns)
                for ns in ("prod-eu", "payments", "monitoring")
                for app in ("frontend", "checkout", "redis", "prometheus")
            )
        }
        self._ips: dict[str, int] = {}
        self._beats = 0

    async def seed(self) -> None:
        if await self.backend.list_prefix(DEMO_PREFIX):
            return
        for i, node in enumerate(self._nodes):
            await self._write_node(node, i)
        for identity, labels in self._identities.items():
            await self.backend.update(
                f"{DEMO_PREFIX}/identities/v1/id/{identity}", labels.encode()
            )
        for _ in range(24):
            await self._add_ip()

    async def _write_node(self, node: str, index: int) -> None:
        self._beats += 1
        value = {
            "Name": node,
            "Cluster": "default",
            "ClusterID": 1,
            "IPAddresses": [{"Type": "InternalIP", "IP": f"192.168.0.{index + 10}"}],
            "IPv4AllocCIDR": {"IP": f"10.0.{index}.0", "Mask": "////AA=="},
            "Heartbeat": self._beats,
        }
        await self.backend.update(
            f"{DEMO_PREFIX}/nodes/v1/default/{node}", orjson.dumps(value)
        )

    async def _add_ip(self) -> None:
        rng = self._rng
        node_index = rng.randrange(len(self._nodes))
        ip = f"10.0.{node_index}.{rng.randrange(2, 254)}"
        if ip in self._ips:
            return
        identity = rng.choice(list(self._identities))
        self._ips[ip] = identity
        value = {
            "IP": ip,
            "ID": identity,
            "HostIP": f"192.168.0.{node_index + 10}",
            "K8sNamespace": self._identities[identity].split("namespace=")[1].rstrip(";"),
            "K8sPodName": f"pod-{rng.randrange(16**5):05x}",
        }
        await self.backend.update(f"{DEMO_PREFIX}/ip/v1/default/{ip}", orjson.dumps(value))

    async def step(self) -> None:
        """One change: an endpoint appears or goes, or a node heartbeats."""
        roll = self._rng.random()
        if roll < 0.4:
            await self._add_ip()
        elif roll < 0.75 and self._ips:
            ip = self._rng.choice(sorted(self._ips))
            del self._ips[ip]
            await self.backend.delete(f"{DEMO_PREFIX}/ip/v1/default/{ip}")
        else:
            index = self._rng.randrange(len(self._nodes))
            await self._write_node(self._nodes[index], index)

    async def run(self, stop: asyncio.Event) -> None:
        """``step`` ``rate`` times per second until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0 / self.rate)
            if not stop.is_set():
                await self.step()


@contextlib.asynccontextmanager
async def _open(
    etcd: kvstore.EtcdClientConfig | None,
) -> AsyncGenerator[kvstore.Backend, None]:
    """The backend for ``etcd`` (or the seeded demo keyspace), closed afterwards."""
    # gRPC's C core would print TLS handshake failures to stderr on its own; the
    # command reports the failure in one line instead (--debug keeps them).
    if not log.isEnabledFor(logging.DEBUG):
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    backend = kvstore.connect(etcd or _MEMORY_URL)
    async with backend:
        if etcd is None:
            await DemoKeyspace(backend).seed()
        yield backend


async def _answer(etcd: kvstore.EtcdClientConfig | None, awaitable: Any) -> Any:
    """Await a backend call, turning silence or failure into a ``CommandError``."""
    where = etcd.describe() if etcd is not None else "the demo keyspace"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await awaitable
    except TimeoutError as exc:
        raise errors.CommandError(
            f"cannot reach etcd at {where}: no answer within {CONNECT_TIMEOUT:.0f} s",
            _ETCD_HINT,
        ) from exc
    except errors.KVStoreUnavailableError as exc:
        raise errors.CommandError(
            f"cannot reach etcd at {where} ({_grpc_details(exc)})",
            _ETCD_HINT,
        ) from exc


def _grpc_details(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        details = getattr(cause, "details", None)
        if callable(details):
            with contextlib.suppress(Exception):
                return str(details())
        cause = cause.__cause__ or cause.__context__
    return str(exc)


async def run_list(options: EtcdOptions, prefix: str, as_json: bool) -> int:
    """Print every key under ``prefix`` with its value, sorted by key."""
    etcd = options.client_config()
    async with _open(etcd) as backend:
        items = await _answer(etcd, backend.list_prefix(prefix))
    for key in sorted(items):
        if as_json:
            _emit({"key": key, **_json_value(items[key])})
        else:
            _print(f"{key}  {render_value(items[key])}")
    if not as_json:
        print(f"{len(items):,} keys under {prefix!r}", file=sys.stderr)
    return 0


async def run_get(options: EtcdOptions, key: str, as_json: bool) -> int:
    """Print the value of ``key``; ``CommandError`` when it does not exist."""
    etcd = options.client_config()
    async with _open(etcd) as backend:
        value = await _answer(etcd, backend.get(key))
    if value is None:
        raise errors.CommandError(
            f"key {key!r} does not exist", "List keys with `kubemirror kv list PREFIX`"
        )
    if as_json:
        _emit({"key": key, **_json_value(value)})
    else:
        _print(render_value(value))
    return 0


class KeyPrinter:
    """Prints a ``kv watch`` mirror: every key at sync, then the keys each change touched.

    The watcher's store (indexed by namespace and name) is compared with the
    state printed last, so a key created and deleted between two ``on_change``
    calls is not shown, and a key changed twice shows once, with its last value.
    A deletion shows the mirror's revision at the time (``revision()``: the
    watcher's ``reflector.last_sync_resource_version``). Callbacks run on the loop.
    """

    def __init__(
        self, source: watcher.KVSource, as_json: bool, revision: Callable[[], str]
    ) -> None:
        self.source = source
        self.as_json = as_json
        self.revision = revision
        self.shown: dict[tuple[str, str], str] = {}  # (namespace, name) -> resourceVersion

    def _key(self, namespace: str, name: str) -> str:
        return self.source.key_of(namespace, name)

    def _print(self, kind: str, key: str, obj: Any) -> None:
        value: bytes = obj["value"] if obj is not None else b""
        revision = obj["metadata"]["resourceVersion"] if obj is not None else self.revision()
        if self.as_json:
            record: dict[str, Any] = {"type": kind, "key": key, "revision": int(revision or 0)}
            if obj is not None:
                record.update(_json_value(value))
            _emit(record)
        elif obj is None:
            _print(f"{kind} {key}")
        else:
            _print(f"{kind} {key}  {render_value(value)}")

    def _changes(self, store: indexed_store.IndexedStore) -> None:
        current = {(r.namespace, r.name): r.resource_version for r in store.refs()}
        for ref in sorted(current.keys() - self.shown.keys()):
            self._print("create", self._key(*ref), next(iter(store.get(*ref)), None))
        for ref in sorted(current.keys() & self.shown.keys()):
            if current[ref] != self.shown[ref]:
                self._print("modify", self._key(*ref), next(iter(store.get(*ref)), None))
        for ref in sorted(self.shown.keys() - current.keys()):
            self._print("delete", self._key(*ref), None)
        self.shown = current

    async def on_sync_complete(self, store: indexed_store.IndexedStore, count: int) -> None:
        self._changes(store)
        if self.as_json:
            _emit({"type": "list-done", "keys": count})
        else:
            print(f"-- {count:,} keys under {self.source.root!r}; watching --", file=sys.stderr)

    async def on_change(
        self, store: indexed_store.IndexedStore, stats: watcher.ChangeStats
    ) -> None:
        self._changes(store)


async def run_watch(
    options: EtcdOptions, prefix: str, as_json: bool, duration: float | None
) -> int:
    """Print the keys under ``prefix``, then every change, until Ctrl-C or ``duration``.

    Until the first listing is complete, a silent or failing etcd is a ``CommandError``.
    """
    etcd = options.client_config()
    stop = asyncio.Event()
    ui.install_stop_handlers(stop)
    if duration is not None:
        asyncio.get_running_loop().call_later(duration, stop.set)
    source = watcher.KVSource(prefix, watcher.ValueFormat.RAW)
    printer = KeyPrinter(source, as_json, lambda: mirror.reflector.last_sync_resource_version)
    config = watcher.WatcherConfig(
        source=source,
        index_by=["metadata.namespace", "metadata.name"],
        debounce_interval=0.0,
        on_change=printer.on_change,
        on_sync_complete=printer.on_sync_complete,
    )
    async with _open(etcd) as backend:
        churn = None
        if etcd is None:
            churn = asyncio.ensure_future(DemoKeyspace(backend, seed=1).run(stop))
        mirror = watcher.Watcher(config, backend)
        mirror.start()
        try:
            await lifecycle.run_until_stopped(_answer(etcd, mirror.wait_for_sync()), stop)
            await stop.wait()
        finally:
            stop.set()
            await mirror.stop()
            if churn is not None:
                await churn
    return 0
