"""PostgresStorage beyond the conformance suite (tests/multicluster/test_storage.py): what
only a shared, durable storage does, against a real PostgreSQL: replicas agreeing on
versions, watches resuming on another replica or after a restart, the event log's
bounded retention (410), schema migration, sync leases and their takeover."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.multicluster import resources
from kubemirror.multicluster.postgres import PostgresStorage, schema
from kubemirror.multicluster.watch_cache import StorageEvent, Watch
from kubemirror.testing import PODS, make_pod

pytestmark = pytest.mark.postgres

class StartReplica(Protocol):
    async def __call__(self, **options: Any) -> PostgresStorage: ...


@pytest_asyncio.fixture
async def replicas(postgres_dsn: str) -> AsyncIterator[StartReplica]:
    """``await start()`` another started replica over the test's database (stopped after)."""
    started: list[PostgresStorage] = []

    async def start(**options: Any) -> PostgresStorage:
        settings: dict[str, Any] = {"prefix": "p", "poll_interval": 0.2, **options}
        replica = PostgresStorage(postgres_dsn, **settings)
        for info in resources.BUILTIN_RESOURCES:
            replica.new_resource_storage(info)
        await replica.start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        await replica.stop()


async def collect(watch: Watch, count: int, within: float = 10.0) -> list[StorageEvent]:
    events: list[StorageEvent] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            batch = await watch.next_batch()
            assert batch, "the watch ended early"
            events += batch
    return events


async def test_replicas_share_objects_versions_and_clusters(replicas: StartReplica) -> None:
    a = await replicas()
    b = await replicas()
    a.prepare_cluster("east")
    pods = a.resource_storage(PODS)
    created = [await pods.acreate("east", make_pod(f"p{i}")) for i in range(3)]
    assert await b.wait_for_index(a.index, timeout=5)
    assert b.has_cluster("east")
    listed = await b.resource_storage(PODS).alist()
    assert listed.items == created
    assert listed.resource_version == (await a.resource_storage(PODS).alist()).resource_version
    assert b.resource_storage(PODS).count("east") == 3
    # writes from either replica take one storage-wide order
    other = await b.resource_storage(PODS).acreate("east", make_pod("q"))
    assert other["metadata"]["resourceVersion"] == "p.4.4"


async def test_a_watch_moves_to_another_replica_without_loss(
    replicas: StartReplica,
) -> None:
    a = await replicas()
    b = await replicas()
    a.prepare_cluster("east")
    pods_a, pods_b = a.resource_storage(PODS), b.resource_storage(PODS)
    start = (await pods_a.alist()).resource_version
    on_b = await pods_b.awatch(ListOptions(resource_version=start))
    for i in range(5):
        await pods_a.acreate("east", make_pod(f"p{i}"))
    first = await collect(on_b, 2)
    on_b.stop()
    resume = first[1].object["metadata"]["resourceVersion"]
    for i in range(5, 8):
        await pods_b.acreate("east", make_pod(f"p{i}"))
    on_a = await pods_a.awatch(ListOptions(resource_version=resume))
    rest = await collect(on_a, 6)
    on_a.stop()
    names = [e.object["metadata"]["name"] for e in first[:2] + rest]
    assert names == [f"p{i}" for i in range(8)], "each event exactly once, in order"


async def test_a_restarted_replica_keeps_prefix_objects_and_the_event_window(
    postgres_dsn: str, replicas: StartReplica
) -> None:
    first = PostgresStorage(postgres_dsn, prefix="p")
    first.new_resource_storage(resources.BUILTIN_RESOURCES[0])
    first.new_resource_storage(PODS)
    async with first:
        first.prepare_cluster("east")
        pods = first.resource_storage(PODS)
        mark = (await pods.alist()).resource_version
        await pods.acreate("east", make_pod("x"))
        await pods.aupdate("east", make_pod("x", labels={"v": "2"}))
    again = await replicas(prefix="ignored")
    assert again.prefix == "p", "the prefix belongs to the database"
    watch = await again.resource_storage(PODS).awatch(ListOptions(resource_version=mark))
    events = await collect(watch, 2)
    watch.stop()
    assert [(e.type, e.previous is not None) for e in events] == [
        ("ADDED", False),
        ("MODIFIED", True),
    ]


async def test_trimmed_log_answers_410(replicas: StartReplica) -> None:
    a = await replicas(retention=2, event_window=2)
    a.prepare_cluster("east")
    pods = a.resource_storage(PODS)
    for i in range(4):
        await pods.acreate("east", make_pod(f"p{i}"))
    page = await pods.alist(ListOptions(limit=1))
    await pods.adelete_by_key("east", "default/p2")
    for i in range(4, 8):
        await pods.acreate("east", make_pod(f"p{i}"))
    assert await a.trim() > 0
    with pytest.raises(errors.GoneError, match="too old") as gone:
        await pods.alist(ListOptions(limit=1, continue_token=page.continue_token))
    # as kube-apiserver answers: a fresh token reads the rest at the current version
    rest = await pods.alist(
        ListOptions(limit=10, continue_token=gone.value.status["metadata"]["continue"]))
    assert [o["metadata"]["name"] for o in rest.items] == ["p1", "p3", "p4", "p5", "p6", "p7"]
    assert rest.resource_version == (await pods.alist()).resource_version
    with pytest.raises(errors.GoneError):
        await pods.awatch(ListOptions(resource_version=page.resource_version))
    # a replica starting now loads only what the log kept
    late = await replicas(retention=2)
    with pytest.raises(errors.GoneError):
        await late.resource_storage(PODS).awatch(ListOptions(resource_version="p.1"))


async def test_schema_from_a_newer_kubemirror_is_refused(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        assert await schema.migrate(conn, "p") == "p"
        assert await schema.migrate(conn, "other") == "p", "migrating twice is a no-op"
        await conn.execute("UPDATE kubemirror_meta SET value = '99' WHERE key = 'schema_version'")
        with pytest.raises(errors.ConfigError, match="schema 99"):
            await schema.migrate(conn, "p")


async def test_one_sync_lease_holder_and_takeover(
    replicas: StartReplica,
) -> None:
    a = await replicas(lease_retry_interval=0.1)
    b = await replicas(lease_retry_interval=0.1)
    never = asyncio.Event()
    held = a.sync_lease("east")
    assert await held.acquire(never)
    waiting = b.sync_lease("east")
    contender = asyncio.ensure_future(waiting.acquire(never))
    await asyncio.sleep(0.5)  # five refused attempts: the lock is held elsewhere
    assert not contender.done()
    assert await b.sync_lease("west").acquire(never), "other clusters are free"
    started = time.monotonic()
    await a.stop()  # its session ends: PostgreSQL drops its advisory locks
    assert held.lost.is_set()
    async with asyncio.timeout(5):
        assert await contender
    print(f"sync lease taken over in {time.monotonic() - started:.3f} s")
    await waiting.release()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    writes=st.lists(
        st.tuples(st.sampled_from(["x", "y", "z", "w"]), st.sampled_from(["web", "db", ""])),
        min_size=1,
        max_size=12,
    ),
    limit=st.integers(min_value=1, max_value=4),
    selector=st.sampled_from(["", "app=web", "app!=web", "app in (web,db)", "!app"]),
)
async def test_paged_list_at_a_version_equals_the_state_then(
    postgres_dsn: str,
    writes: list[tuple[str, str]],
    limit: int,
    selector: str,
) -> None:
    """Pages continued after any later writes show exactly the state of the first page."""
    storage = PostgresStorage(postgres_dsn, prefix=f"h{time.monotonic_ns()}")
    storage.new_resource_storage(PODS)
    async with storage:
        try:
            storage.prepare_cluster("east")
            pods = storage.resource_storage(PODS)
            await storage.flush()
            for name, _ in writes[: len(writes) // 2]:
                await pods.aupsert("east", make_pod(name, labels={"app": "web"}))
            expected = [
                o["metadata"]["name"]
                for o in (await pods.alist(ListOptions(label_selector=selector))).items
            ]
            page = await pods.alist(ListOptions(limit=limit, label_selector=selector))
            seen = [o["metadata"]["name"] for o in page.items]
            for name, app in writes[len(writes) // 2 :]:
                if app == "" and await pods.aget("east", "default", name) is not None:
                    await pods.adelete_by_key("east", f"default/{name}")
                else:
                    labels = {"app": app} if app else {}
                    await pods.aupsert("east", make_pod(name, labels=labels))
            token = page.continue_token
            while token:
                page = await pods.alist(
                    ListOptions(limit=limit, label_selector=selector, continue_token=token)
                )
                seen += [o["metadata"]["name"] for o in page.items]
                token = page.continue_token
            assert seen == expected
        finally:
            async with storage._connection() as conn:  # the next example starts from nothing
                await conn.execute(
                    "DROP TABLE kubemirror_meta, kubemirror_counter, kubemirror_clusters, "
                    "kubemirror_objects, kubemirror_events"
                )


async def test_writes_after_the_lease_moved_are_fenced(replicas: StartReplica) -> None:
    a = await replicas(lease_retry_interval=0.1, lease_check_interval=0.2)
    b = await replicas(lease_retry_interval=0.1)
    never = asyncio.Event()
    lease_a = a.sync_lease("east")
    assert await lease_a.acquire(never)
    a.prepare_cluster("east")
    store_a = a.resource_storage(PODS).cluster_store("east")
    store_a.add(make_pod("before"))
    await a.flush()
    # PostgreSQL ends a's lease session (as when its connection drops): b takes over
    async with await psycopg.AsyncConnection.connect(a.dsn, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (f"kubemirror leases {os.getpid()}",),
        )
    lease_b = b.sync_lease("east")
    async with asyncio.timeout(5):
        assert await lease_b.acquire(never)
    store_a.add(make_pod("late"))  # a reflector that has not noticed yet
    await a.flush()
    names = [p["metadata"]["name"] for p in (await b.resource_storage(PODS).alist()).items]
    assert names == ["before"]
    b.resource_storage(PODS).cluster_store("east").add(make_pod("by-b"))
    await b.flush()
    assert await b.resource_storage(PODS).aget("east", "default", "by-b") is not None
    await lease_b.release()
