"""``EtcdBackend``: the kvstore ``Backend`` on a real etcd v3 cluster, through aetcd.

Part of the kvstore layer (seed: Cilium's etcd backend). aetcd is an optional
dependency (``pip install kubemirror[etcd]``), imported when the first backend is
created. This module adds what the raw client lacks: failover between the members
of a cluster (``EtcdClientConfig``: several endpoints, TLS, auth), idempotent writes
retried while no member answers, a session lease kept alive every TTL/3 through
whichever member is reachable, paginated lists at one revision, and a list-then-watch
stream that resumes from the last seen revision after a connection loss or a move to
another member and relists (emitting the difference) after a compaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from kubemirror import errors
from kubemirror.kvstore import backend, etcd_client, etcd_config, lease, member_deadline

__all__ = ["DEFAULT_ENDPOINT", "EtcdBackend"]

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = etcd_config.DEFAULT_ENDPOINT

_T = TypeVar("_T")
_PAGE_SIZE = 1000
_FENCE_ATTEMPTS = 64  # compare-and-retry rounds a write may lose to other writers
_UNAVAILABLE, _LEASE, _COMPACTED, _OTHER = "unavailable", "lease", "compacted", "other"
_BUSY = "busy"  # the member answered that the cluster is slow: retry it, do not move
# etcd's answers for a proposal the cluster did not commit in time, or dropped for a new
# leader, or when applying lags far behind: the member is alive and has a leader.
_BUSY_REPLIES = ("request timed out", "leader changed", "too many requests")
_DELETE = 1  # mvccpb.Event.DELETE (PUT is 0)
_CREATE, _MODIFY = backend.KVEventType.CREATE, backend.KVEventType.MODIFY
_GRPC_OPTIONS: dict[str, Any] = {
    # Reconnect quickly after the server comes back (gRPC defaults to 1 s .. 120 s).
    # grpc.min_reconnect_backoff_ms stays at its 20 s default: gRPC also uses it as
    # the time a connection attempt may take, and at 100 ms a process opening
    # hundreds of sessions at once on a busy machine failed its own handshakes
    # ("timed out before receiving SETTINGS frame") and failed over from healthy
    # members. A refused connection still fails at once; a silent member is bounded
    # by the request deadline (``member_deadline``).
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
    # Notice a member that vanished without closing the connection (etcd allows 5 s+).
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}


def _load_aetcd() -> Any:
    try:
        import aetcd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise errors.ConfigError(
            "EtcdBackend needs the aetcd package: pip install 'kubemirror[etcd]'",
            field="backend",
        ) from exc
    return aetcd


def _encode(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _decode(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _prefix_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range starting with ``prefix``."""
    buf = bytearray(prefix)
    for i in reversed(range(len(buf))):
        if buf[i] < 0xFF:
            buf[i] += 1
            return bytes(buf[: i + 1])
    return b"\0"  # every key


def _one_line(exc: BaseException) -> str:
    """A gRPC error's ``details()`` (its ``str`` spans lines), else ``str(exc)``."""
    details = getattr(exc, "details", None)
    return " ".join(str(details() if callable(details) else exc).split())


def _held(kvs: Sequence[Any]) -> tuple[bytes, int] | None:
    """``(value, lease)`` of the key a range read returned, None when absent."""
    return (bytes(kvs[0].value), int(kvs[0].lease)) if kvs else None


def _parse_endpoint(endpoint: str) -> tuple[str, int]:
    parsed = etcd_config.EtcdEndpoint.parse(endpoint, field_name="endpoint")
    return parsed.host, parsed.port


class EtcdBackend(lease.LeasedSession):
    """A ``Backend`` session on an etcd v3 cluster (one or more members).

    ``endpoints`` is a ``host:port`` / URL, a comma-separated list of them, a
    sequence of them, or an ``EtcdClientConfig`` (TLS files, username/password).

    - The session talks to one member at a time, starting at a random one. When a
      call finds that member unreachable (or without a leader), it moves to the next
      endpoint, closes the old connection and retries there.
    - Writes and reads that fail because no member is reachable are retried with
      backoff for up to ``retry_timeout`` seconds (on the same member when it answered
      that the cluster is slow: a timed-out proposal, a leader change), then raise
      ``KVStoreUnavailableError`` (the write may or may not have been applied; all
      writes are idempotent, so retrying is safe). Other server errors raise
      ``KVStoreError`` from the cause. Each RPC gets ``request_timeout`` seconds of a
      responsive event loop (``member_deadline``): a late answer because this
      process was busy is not a dead member and causes no failover.
    - Each ``update``/``update_if_different``/``delete`` is fenced: it applies only if
      the key was not modified after the newest revision this session has seen, so
      a stale copy of a request that a member delivers late is a no-op (see
      ``_fenced_write``); so is each ``update_many`` batch, as one transaction.
    - The session lease lasts ``lease_ttl`` seconds (etcd rounds up to whole seconds)
      and is refreshed every ``lease_ttl / 3`` through the current member; a lease
      found gone is replaced and its keys' observers are told (the sync stores
      write those keys again).
    - ``list_and_watch`` never ends on its own: it reconnects (on another member if
      need be) with capped backoff, resumes from the revision after the last one it
      delivered (no event lost or repeated), and relists after compaction.

    Use from one event loop. Opening is lazy (first call connects); ``close()`` (or
    ``async with``) releases the gRPC channel and ends every watch.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | etcd_config.EtcdClientConfig = DEFAULT_ENDPOINT,
        *,
        lease_ttl: float = 15.0,
        request_timeout: float = 5.0,
        retry_timeout: float = 5.0,
        name: str = "",
    ) -> None:
        self._aetcd = _load_aetcd()
        from aetcd import rpc  # the generated protobuf/gRPC bindings

        self._rpc = rpc
        self.config = (
            endpoints if isinstance(endpoints, etcd_config.EtcdClientConfig)
            else etcd_config.EtcdClientConfig.from_endpoints(endpoints)
        )
        if request_timeout <= 0:
            raise errors.ConfigError(
                "must be positive", field="request_timeout", expression=str(request_timeout)
            )
        self.request_timeout = request_timeout
        self.retry_timeout = retry_timeout
        self._credentials = etcd_client.channel_credentials(self.config)
        self._index = random.randrange(len(self.config.endpoints))
        self._generation = 0  # bumped each time the session moves to another member
        self._revision = 0  # newest cluster revision seen: the fence of every write
        self._retired: set[asyncio.Task[None]] = set()
        super().__init__(lease_ttl, name or f"etcd {self.config.describe()}")
        self._client: Any = self._new_client()
        self._closed_event = asyncio.Event()

    @property
    def endpoint(self) -> str:
        """``host:port`` of the member this session talks to now."""
        return self.config.endpoints[self._index].target

    @property
    def host(self) -> str:
        """Host of the current member."""
        return self.config.endpoints[self._index].host

    @property
    def port(self) -> int:
        """Client port of the current member."""
        return self.config.endpoints[self._index].port

    @property
    def failovers(self) -> int:
        """How many times this session moved to another member."""
        return self._generation

    def _new_client(self) -> Any:
        return etcd_client.open_client(
            self._aetcd, self.config, self.config.endpoints[self._index], self._credentials,
            options=_GRPC_OPTIONS,
        )

    def _failover(self, generation: int, exc: BaseException, operation: str) -> None:
        """The member behind ``generation`` failed: move to the next endpoint.

        No-op when another call already moved on since ``generation``, and with a
        single endpoint (gRPC redials it) unless the auth token expired: then a new
        connection to the same member authenticates again. The old client is closed
        in the background.
        """
        if generation != self._generation or self._closed:
            return
        if len(self.config.endpoints) == 1 and "invalid auth token" not in str(exc):
            return
        old, before = self._client, self.endpoint
        self._index = (self._index + 1) % len(self.config.endpoints)
        self._generation += 1
        self._client = self._new_client()
        log.info("%s: %s failed on %s (%s: %s); moving to %s", self._name, operation, before,
                 type(exc).__name__, _one_line(exc), self.endpoint)
        task = asyncio.get_running_loop().create_task(self._retire(old))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _cut_by_failover(self, generation: int) -> bool:
        """Whether a ``CancelledError`` came from closing a replaced client's channel.

        gRPC raises ``CancelledError`` in calls still running on a closed channel; it
        is a retryable interruption unless the calling task itself is being cancelled.
        """
        task = asyncio.current_task()
        return (
            generation != self._generation
            and not self._closed
            and (task is None or task.cancelling() == 0)
        )

    async def _retire(self, client: Any) -> None:
        """Close a replaced client once its in-flight calls had time to end."""
        await self._pause(self.request_timeout)
        await self._close_client(client)

    @staticmethod
    async def _close_client(client: Any) -> None:
        with contextlib.suppress(Exception):
            await client.close()

    # -- error handling ----------------------------------------------------------

    def _classify(self, exc: BaseException) -> str:
        aex = self._aetcd
        if isinstance(exc, aex.RevisionCompactedError):
            return _COMPACTED
        if isinstance(exc, aex.ConnectionFailedError | aex.ConnectionTimeoutError):
            return _UNAVAILABLE
        if isinstance(exc, asyncio.TimeoutError | ConnectionError):
            return _UNAVAILABLE
        text = str(exc)
        if "lease not found" in text:
            return _LEASE
        if any(reply in text for reply in _BUSY_REPLIES):
            return _BUSY
        if "required revision has been compacted" in text:
            return _COMPACTED
        if isinstance(exc, self._rpc.AioRpcError):
            import grpc

            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return _UNAVAILABLE
            if code == grpc.StatusCode.OUT_OF_RANGE:
                return _COMPACTED
        if isinstance(exc, aex.ClientError) and (
            "Socket closed" in text or "failed to connect" in text or "leader" in text
            or "invalid auth token" in text
        ):
            return _UNAVAILABLE
        return _OTHER

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, returning early when the backend closes."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed_event.wait(), delay)

    async def _backoff(self, delay: float) -> float:
        """``_pause(delay)``, then return the next watch retry delay (doubled, 1 s at most)."""
        await self._pause(delay)
        return min(delay * 2, 1.0)

    def _compacted(self, exc: BaseException, prefix: str) -> bool:
        """Whether ``exc`` says the watched revision is compacted (logged: relist then)."""
        if self._classify(exc) != _COMPACTED:
            return False
        log.info("%s: watch of %r compacted; relisting", self._name, prefix)
        return True

    async def _call(
        self,
        operation: str,
        key: str,
        fn: Callable[[], Awaitable[_T]],
        *,
        retry: bool = True,
        attempt_seconds: float | None = None,
    ) -> _T:
        """``fn()`` with failover and retries (see the class); each attempt gets
        ``attempt_seconds`` (default ``request_timeout``) of a responsive loop."""
        loop = asyncio.get_running_loop()
        if attempt_seconds is None:
            attempt_seconds = self.request_timeout
        deadline = loop.time() + (self.retry_timeout if retry else 0.0)
        delay = 0.02
        while True:
            self._check_open()
            generation = self._generation
            try:
                return await member_deadline.answer_within(fn(), attempt_seconds)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and not self._cut_by_failover(
                    generation
                ):
                    raise
                if self._closed:
                    raise errors.KVStoreClosedError(f"backend {self._name}") from exc
                # A call cut short because the session moved to another member is retried.
                kind = _UNAVAILABLE if generation != self._generation else self._classify(exc)
                if kind == _UNAVAILABLE:
                    self._failover(generation, exc, operation)
                if kind == _LEASE:
                    raise lease.LeaseNotFoundError(str(exc)) from exc
                if kind not in (_UNAVAILABLE, _BUSY):
                    raise errors.KVStoreError(
                        f"etcd {operation} of {key!r} failed: {exc}"
                    ) from exc
                if loop.time() + delay > deadline:
                    raise errors.KVStoreUnavailableError(operation, key, exc) from exc
                log.debug("%s: %s of %r failed (%s); retrying", self._name, operation, key, exc)
            await self._pause(delay)
            delay = min(delay * 2, 0.5)

    # -- LeaseDriver -------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        seconds = max(1, math.ceil(ttl))
        granted = await self._call("lease grant", "", lambda: self._client.lease(seconds))
        return int(granted.id)

    async def keep_lease_alive(self, lease_id: int) -> float:
        # A refresh slower than TTL/3 is worth less than a prompt retry on another member.
        timeout = min(self.request_timeout, self.lease_ttl / 3)

        async def refresh() -> Any:
            import grpc

            client = self._client
            await client.connect()
            # One request and one reply on the bidirectional stream, then hang up.
            call = client.leasestub.LeaseKeepAlive(metadata=client.metadata)
            try:
                await call.write(self._rpc.LeaseKeepAliveRequest(ID=lease_id))
                reply = await call.read()
            finally:
                call.cancel()
            return None if reply is grpc.aio.EOF else reply

        reply = await self._call("lease keep-alive", "", refresh, retry=False,
                                 attempt_seconds=timeout)
        if reply is None:
            raise errors.KVStoreUnavailableError("lease keep-alive", f"lease {lease_id:x}")
        return float(reply.TTL)

    # -- Backend: writes ---------------------------------------------------------

    async def _put(self, key: str, value: bytes, lease_id: int, if_different: bool) -> bool:
        rpc = self._rpc
        put = rpc.RequestOp(
            request_put=rpc.PutRequest(key=_encode(key), value=value, lease=lease_id)
        )
        applied = await self._fenced_write(
            "update", [(key, put, (value, lease_id))], if_different
        )
        return applied is not None

    async def _fenced_write(
        self,
        operation: str,
        writes: Sequence[tuple[str, Any, tuple[bytes, int] | None]],
        if_different: bool = False,
    ) -> Any:
        """Apply the ``(key, op, wanted)`` writes in one transaction, only if none of
        their keys was written after the newest revision this session knows.

        Every put and delete (one key, or an ``update_many`` batch) is a transaction
        comparing each key's mod revision with the newest revision this session has
        seen (the fence), so a request that a frozen member delivers late, after it
        timed out and was retried, cannot overwrite a newer value. When a compare
        fails the keys are read in the same transaction: all already ``wanted``
        (value, lease; None for absent) means done (an earlier attempt landed), else
        another writer was first and the whole transaction is retried above the
        revision now seen. With ``if_different`` (one write) nothing is written when
        the key already holds ``wanted``. Returns the transaction response when the
        ops were applied, else None.
        """
        rpc = self._rpc
        raws = [_encode(key) for key, _, _ in writes]
        ops = [op for _, op, _ in writes]
        reads = [rpc.RequestOp(request_range=rpc.RangeRequest(key=raw)) for raw in raws]
        wanted = [want for _, _, want in writes]
        first = writes[0][0]  # the key errors name (a batch's first)
        for _ in range(_FENCE_ATTEMPTS):
            fence = self._revision + 1
            fenced = rpc.TxnRequest(
                compare=[rpc.Compare(key=raw, result=rpc.Compare.LESS, target=rpc.Compare.MOD,
                                     mod_revision=fence) for raw in raws],
                success=ops,
                failure=reads,
            )
            request = fenced
            if if_different and len(writes) == 1 and wanted[0] is not None:
                value, lease_id = wanted[0]
                request = rpc.TxnRequest(
                    compare=[
                        rpc.Compare(key=raws[0], result=rpc.Compare.EQUAL,
                                    target=rpc.Compare.VALUE, value=value),
                        rpc.Compare(key=raws[0], result=rpc.Compare.EQUAL,
                                    target=rpc.Compare.LEASE, lease=lease_id),
                    ],
                    success=[],
                    failure=[rpc.RequestOp(request_txn=fenced)],
                )
            resp = await self._call(operation, first, functools.partial(self._txn_rpc, request))
            self._saw(int(resp.header.revision))
            inner = resp
            if request is not fenced:
                if resp.succeeded:
                    return None  # already holds the value under this lease
                inner = resp.responses[0].response_txn
            if inner.succeeded:
                return inner
            current = [_held(read.response_range.kvs) for read in inner.responses]
            if current == wanted:
                return None
        more = f" (and {len(writes) - 1} more keys)" if len(writes) > 1 else ""
        raise errors.KVStoreError(
            f"etcd {operation} of {first!r}{more} lost {_FENCE_ATTEMPTS} races with other writers"
        )

    async def _txn_rpc(self, request: Any) -> Any:
        client = self._client
        await client.connect()
        return await client.kvstub.Txn(request, metadata=client.metadata)

    def _saw(self, revision: int) -> None:
        """Note a revision the cluster reached (raises the write fence)."""
        if revision > self._revision:
            self._revision = revision

    async def _write(self, key: str, value: bytes, lease_: bool, if_different: bool) -> bool:
        self._check_open()
        if not lease_:
            written = await self._put(key, value, 0, if_different)
            self._leases.detach(key)
            return written
        lease_id, written = await self._leases.with_lease(
            repr(key), lambda lease_id: self._put(key, value, lease_id, if_different)
        )
        self._leases.attach(key, lease_id)
        return written

    async def update(self, key: str, value: bytes, lease: bool = False) -> None:
        await self._write(key, value, lease, False)

    async def update_if_different(self, key: str, value: bytes, lease: bool = False) -> bool:
        return await self._write(key, value, lease, True)

    async def update_many(self, writes: Mapping[str, bytes | None], lease: bool = False) -> None:
        self._check_open()
        items = list(writes.items())
        for start in range(0, len(items), backend.MAX_BATCH):
            await self._write_batch(items[start:start + backend.MAX_BATCH], lease)

    async def _txn(self, batch: list[tuple[str, bytes | None]], lease_id: int) -> None:
        rpc = self._rpc
        writes = [
            (key, rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=_encode(key))),
             None) if value is None
            else (key, rpc.RequestOp(request_put=rpc.PutRequest(
                key=_encode(key), value=value, lease=lease_id)), (value, lease_id))
            for key, value in batch
        ]
        await self._fenced_write("update_many", writes)

    async def _write_batch(self, batch: list[tuple[str, bytes | None]], lease_: bool) -> None:
        if lease_ and any(value is not None for _, value in batch):
            lease_id, _ = await self._leases.with_lease(
                f"{batch[0][0]!r}...", lambda lease_id: self._txn(batch, lease_id)
            )
        else:
            lease_id = 0
            await self._txn(batch, lease_id)
        for key, value in batch:
            if lease_id and value is not None:
                self._leases.attach(key, lease_id)
            else:
                self._leases.detach(key)

    async def delete(self, key: str) -> bool:
        self._check_open()
        rpc = self._rpc
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=_encode(key)))
        applied = await self._fenced_write("delete", [(key, op, None)])
        self._leases.detach(key)
        return applied is not None and applied.responses[0].response_delete_range.deleted > 0

    # -- Backend: reads ----------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        raw = _encode(key)
        result = await self._call("get", key, lambda: self._client.get(raw))
        return None if result is None else bytes(result.value)

    async def _range(self, prefix: str) -> tuple[list[tuple[bytes, bytes, int]], int]:
        """Every ``(key, value, mod_revision)`` under ``prefix`` at one revision."""
        raw = _encode(prefix)
        end = _prefix_end(raw)
        while True:
            items: list[tuple[bytes, bytes, int]] = []
            revision = 0
            start = raw
            try:
                while True:
                    resp = await self._call(
                        "list", prefix, functools.partial(self._range_page, start, end, revision)
                    )
                    if revision == 0:
                        revision = int(resp.header.revision)
                        self._saw(revision)
                    items.extend((kv.key, kv.value, kv.mod_revision) for kv in resp.kvs)
                    if not resp.more or not resp.kvs:
                        return items, revision
                    start = resp.kvs[-1].key + b"\0"
            except errors.KVStoreError as exc:
                # A compaction between two pages: start over at a new revision.
                if not isinstance(exc.__cause__, Exception) or (
                    self._classify(exc.__cause__) != _COMPACTED
                ):
                    raise

    async def _range_page(self, start: bytes, end: bytes, revision: int) -> Any:
        client = self._client
        await client.connect()
        request = self._rpc.RangeRequest(
            key=start, range_end=end, limit=_PAGE_SIZE, revision=revision
        )
        return await client.kvstub.Range(request, metadata=client.metadata)

    async def list_prefix(self, prefix: str) -> dict[str, bytes]:
        self._check_open()
        items, _ = await self._range(prefix)
        return {_decode(k): bytes(v) for k, v, _ in items}

    # -- Backend: list and watch -------------------------------------------------

    @staticmethod
    def _diff(
        known: dict[bytes, int], items: list[tuple[bytes, bytes, int]], revision: int
    ) -> Iterator[backend.KVEvent]:
        """Events turning ``known`` (key -> mod revision) into ``items``, listed at
        ``revision`` (the revision of the DELETEs); updates ``known``."""
        seen: set[bytes] = set()
        for key, value, mod_revision in items:
            seen.add(key)
            previous = known.get(key)
            if previous == mod_revision:
                continue
            known[key] = mod_revision
            kind = backend.KVEventType.CREATE if previous is None else backend.KVEventType.MODIFY
            yield backend.KVEvent(kind, _decode(key), bytes(value), mod_revision)
        for key in [k for k in known if k not in seen]:
            del known[key]
            yield backend.KVEvent(backend.KVEventType.DELETE, _decode(key), b"", revision)

    async def list_and_watch(self, prefix: str) -> AsyncGenerator[backend.KVEvent, None]:
        """See ``Backend.list_and_watch``; close it with ``aclose()`` when done."""
        self._check_open()
        raw = _encode(prefix)
        known: dict[bytes, int] = {}
        listed = False
        need_list = True
        revision = 0
        delay = 0.05
        while not self._closed:
            if need_list:
                try:
                    items, revision = await self._range(prefix)
                except errors.KVStoreClosedError:
                    return
                except errors.KVStoreError as exc:
                    log.warning("%s: listing %r failed: %s; retrying", self._name, prefix, exc)
                    delay = await self._backoff(delay)
                    continue
                for event in self._diff(known, items, revision):
                    yield event
                if not listed:
                    listed = True
                    yield backend.KVEvent(backend.KVEventType.LIST_DONE, revision=revision)
                need_list = False
            generation = self._generation
            resume_from = revision + 1
            try:
                watch = await self._unless_closed(member_deadline.answer_within(
                    self._client.watch_range(raw, _prefix_end(raw), resume_from),
                    self.request_timeout,
                ))
                if watch is None:
                    return
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and not self._cut_by_failover(
                    generation
                ):
                    raise
                if self._closed:
                    return
                if self._compacted(exc, prefix):
                    need_list = True
                    continue
                log.debug("%s: watch of %r failed to start: %s", self._name, prefix, exc)
                self._failover_if_unavailable(generation, exc, "watch start")
                delay = await self._backoff(delay)
                continue
            try:
                async for batch in watch:
                    delay = 0.05
                    for ev in batch:
                        kv = ev.kv
                        mod_revision = kv.mod_revision
                        if mod_revision < resume_from:
                            continue  # delivered before this resume (a server must not send it)
                        revision = mod_revision
                        self._saw(revision)
                        key = kv.key
                        if ev.type == _DELETE:
                            if known.pop(key, None) is None:
                                continue
                            yield backend.KVEvent(
                                backend.KVEventType.DELETE, _decode(key), b"", revision
                            )
                        else:
                            kind = _MODIFY if key in known else _CREATE
                            known[key] = revision
                            yield backend.KVEvent(kind, _decode(key), kv.value, revision)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and not self._cut_by_failover(
                    generation
                ):
                    raise
                if self._closed:
                    return
                if self._compacted(exc, prefix):
                    need_list = True
                else:
                    log.info("%s: watch of %r interrupted (%s); resuming", self._name, prefix,
                             _one_line(exc))
                    self._failover_if_unavailable(generation, exc, "watch")
                    delay = await self._backoff(delay)
            else:
                if not self._closed:  # the server ended the watch: resume, but not in a tight loop
                    delay = await self._backoff(delay)
            finally:
                with contextlib.suppress(Exception):
                    await watch.cancel()

    # -- lifecycle -----------------------------------------------------------------

    async def _unless_closed(self, call: Awaitable[_T]) -> _T | None:
        """Await ``call``, or cancel it and return None once the backend closes.

        (Creating a watch waits for the server's answer for up to ``request_timeout``
        even after the channel closed.)
        """
        task = asyncio.ensure_future(call)
        closed = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            closed.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    def _failover_if_unavailable(
        self, generation: int, exc: BaseException, operation: str
    ) -> None:
        if generation != self._generation or self._classify(exc) == _UNAVAILABLE:
            self._failover(generation, exc, operation)

    async def _release(self) -> None:
        self._closed_event.set()
        await self._close_client(self._client)
        if self._retired:
            await asyncio.gather(*self._retired)

    def __repr__(self) -> str:
        return (
            f"EtcdBackend({self.config.describe()!r}, current={self.endpoint!r}, "
            f"lease_id={self.lease_id})"
        )
