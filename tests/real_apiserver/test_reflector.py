"""Reflector, ListWatch and the client's LIST/WATCH against the genuine kube-apiserver.

Everything the reflector layer assumes about the API server's list and watch
protocol, checked against a real etcd + kube-apiserver (``kubemirror.envtest``):
pagination and continue tokens, watches the server ends, bookmarks, streaming
lists (``sendInitialEvents``), real 410s (an etcd compaction, a re-initialised
watch cache), ``resourceVersionMatch`` and selectors. Tests parametrized with the
``api`` fixture also run against kubemirror's own ``KubeApiServer``; where it
behaves differently the OWN case is marked a strict xfail from inside the test,
with the difference as the reason.

Most tests share the session's server. Two private servers live in this module:
``uncached_env`` (``--watch-cache=false``: LIST and WATCH read etcd, so compacting
etcd directly expires versions and continue tokens at once) and
``no_watchlist_env`` (``WatchList`` feature gate off; its apiserver is restarted
by one test to re-initialise its watch cache). The ListerWatcher is the real
``ListWatch``; ``RecordingListWatch`` only delegates to it, recording calls, and
can hold the next watch back (``gate``) to stand for a client that is away.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Self

import aiohttp
import pytest
import pytest_asyncio

from kubemirror import errors
from kubemirror.client import KubeClient, ListOptions
from kubemirror.envtest import Assets, EnvTest
from kubemirror.listwatch import EventStream, ListPage, ListWatch
from kubemirror.reflector import INITIAL_EVENTS_END_ANNOTATION, Backoff, Reflector
from kubemirror.types import WatchEvent
from tests.memory_lw import DictStore
from tests.polling import eventually
from tests.real_apiserver.conftest import (
    CONFIGMAPS,
    NAMESPACES,
    OWN,
    REAL,
    ServerUnderTest,
    configmap,
    create_namespace,
)

CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token in "
    "this response to retrieve the remainder of the results. Continuing with the provided "
    "token results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list."
)
WATCH_TOO_OLD = "The resourceVersion for the provided watch is too old."
LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
INVALID_LIST_OPTIONS = 'ListOptions.meta.k8s.io "" is invalid: '


# -- helpers ----------------------------------------------------------------------------------


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, cap=0.1, rng=random.Random(7))


class RecordingStream:
    """An ``EventStream`` that records what the real stream delivered and how it ended."""

    def __init__(self, inner: EventStream) -> None:
        self.inner = inner
        self.events: list[WatchEvent] = []
        self.ended = False  # the server ended the stream normally
        self.closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            event = await self.inner.__anext__()
        except StopAsyncIteration:
            self.ended = True
            raise
        self.events.append(event)
        return event

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


class RecordingListWatch:
    """Delegates to a real ``ListWatch``, recording each call and what it returned.

    While ``gate`` is clear, the next ``watch`` waits (``waiting`` counts them) before
    going to the server: the reflector is then disconnected for as long as a test
    needs. ``after_list(n)`` runs after the n-th successful list call.
    """

    def __init__(self, lw: ListWatch) -> None:
        self.lw = lw
        self.list_calls: list[ListOptions] = []
        self.list_results: list[ListPage[dict[str, Any]]] = []
        self.watch_calls: list[ListOptions] = []
        self.streams: list[RecordingStream] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0
        self.after_list: Callable[[int], Awaitable[None]] | None = None

    async def list(self, opts: ListOptions) -> ListPage[dict[str, Any]]:
        self.list_calls.append(opts)
        result = await self.lw.list(opts)
        self.list_results.append(result)
        if self.after_list is not None:
            await self.after_list(len(self.list_results))
        return result

    async def watch(self, opts: ListOptions) -> EventStream:
        if not self.gate.is_set():
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        self.watch_calls.append(opts)
        stream = RecordingStream(await self.lw.watch(opts))
        self.streams.append(stream)
        return stream

    def __str__(self) -> str:
        return f"recording {self.lw}"


class MirrorStore(DictStore):
    """``DictStore`` that also records which keys each ``replace`` removed."""

    def __init__(self) -> None:
        super().__init__()
        self.replace_removed: list[set[str]] = []

    def replace(self, objs: list[Any], resource_version: str = "") -> None:
        before = set(self.items)
        super().replace(objs, resource_version)
        self.replace_removed.append(before - set(self.items))


def recorder(
    client: KubeClient, namespace: str | None, label_selector: str = "", field_selector: str = ""
) -> RecordingListWatch:
    return RecordingListWatch(ListWatch(client, CONFIGMAPS, namespace,
                                        label_selector=label_selector,
                                        field_selector=field_selector))


def name_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def rv_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


def caught_up(refl: Reflector, rv: str) -> Callable[[], bool]:
    """The reflector applied everything up to etcd revision ``rv`` (real server only)."""
    return lambda: int(refl.last_sync_resource_version or 0) >= int(rv)


def more_watches_than(lw: RecordingListWatch, count: int) -> Callable[[], bool]:
    return lambda: len(lw.watch_calls) > count


def holds(store: MirrorStore, items: dict[str, dict[str, Any]]) -> Callable[[], bool]:
    return lambda: store.items == items


async def server_objects(client: KubeClient, namespace: str) -> dict[str, dict[str, Any]]:
    listed = await client.list(CONFIGMAPS, namespace, ListOptions())
    return {f"{namespace}/{name_of(o)}": o for o in listed.items}


async def create_configmaps(
    client: KubeClient, namespace: str, names: list[str], labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    limit = asyncio.Semaphore(16)

    async def one(name: str) -> dict[str, Any]:
        async with limit:
            return await client.create(CONFIGMAPS, configmap(name, labels=labels), namespace)

    return list(await asyncio.gather(*(one(n) for n in names)))


async def relabel(
    client: KubeClient, obj: dict[str, Any], namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    changed = {**obj, "metadata": {**obj["metadata"], "labels": labels}}
    return await client.replace(CONFIGMAPS, changed, namespace)


async def set_data(
    client: KubeClient, obj: dict[str, Any], namespace: str, data: dict[str, str]
) -> dict[str, Any]:
    return await client.replace(CONFIGMAPS, {**obj, "data": data}, namespace)


def decode_continue(token: str) -> dict[str, Any]:
    """The real server's continue token: unpadded URL-safe base64 of a JSON object."""
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return decoded


async def collect(stream: EventStream, count: int | None = None) -> list[WatchEvent]:
    """Events until the stream ends (or ``count`` of them), then close it."""
    events: list[WatchEvent] = []
    try:
        async for event in stream:
            events.append(event)
            if count is not None and len(events) == count:
                break
    finally:
        await stream.aclose()
    return events


def summary(events: list[WatchEvent]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def expired_event(message: str) -> dict[str, Any]:
    return {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Expired", "code": 410}}


def rv_index(api: ServerUnderTest, rv: str) -> int:
    """Orders resourceVersions: etcd revisions (REAL), ``<prefix>.<index>[.<orig>]`` (OWN)."""
    return int(rv) if api.kind == REAL else int(rv.split(".")[1])


def own_differs(request: pytest.FixtureRequest, api: ServerUnderTest, reason: str) -> None:
    """Mark the OWN case a strict xfail: kubemirror's server must really fail the check."""
    if api.kind == OWN:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


async def etcd_call(env: EnvTest, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST to etcd's gRPC gateway (plain HTTP on 127.0.0.1)."""
    async with aiohttp.ClientSession() as session, session.post(
        f"{env.etcd.client_url}{path}", json=body
    ) as response:
        payload: dict[str, Any] = await response.json()
        assert response.status == 200, payload
        return payload


async def compact_etcd(env: EnvTest, revision: int = 0) -> int:
    """Compact etcd (physically) at ``revision`` (default: the current one); returns it."""
    if not revision:
        ranged = await etcd_call(env, "/v3/kv/range",
                                 {"key": base64.b64encode(b"/registry/").decode(), "limit": 1})
        revision = int(ranged["header"]["revision"])
    answer = await etcd_call(env, "/v3/kv/compaction",
                             {"revision": str(revision), "physical": True})
    assert int(answer["header"]["revision"]) == revision
    return revision


# -- private servers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uncached_env(envtest_assets: Assets) -> Iterator[EnvTest]:
    """A real server without watch cache: LIST and WATCH are served by etcd itself.

    Without the API server identity lease (renewed every 10 s) nothing writes to
    etcd but the tests, so a test knows which revision each of its writes gets.
    """
    args = ("--watch-cache=false",
            "--feature-gates=APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false")
    with EnvTest(envtest_assets, apiserver_args=args) as env:
        yield env


@pytest.fixture(scope="module")
def no_watchlist_env(envtest_assets: Assets) -> Iterator[EnvTest]:
    """A real server with the WatchList feature gate off (watch cache on)."""
    with EnvTest(envtest_assets, apiserver_args=("--feature-gates=WatchList=false",)) as env:
        yield env


@pytest_asyncio.fixture
async def uncached_client(uncached_env: EnvTest) -> AsyncIterator[KubeClient]:
    async with KubeClient(uncached_env.client_config) as client:
        yield client


# -- paginated LIST ---------------------------------------------------------------------------


async def test_reflector_pages_a_large_list_with_the_servers_continue_tokens(
    real_client: KubeClient, namespace: str
) -> None:
    names = [f"cm{i:03d}" for i in range(250)]
    await create_configmaps(real_client, namespace, names)
    lw = recorder(real_client, namespace)
    store = MirrorStore()
    refl = Reflector(lw, store, page_size=100, backoff=fast_backoff(), name="paged")
    async with refl:
        await eventually(refl.has_synced, what="paged reflector synced")
        await eventually(lambda: len(lw.watch_calls) == 1, what="watch started")
        rv = refl.last_sync_resource_version
        pages = lw.list_results
        assert [len(p.items) for p in pages] == [100, 100, 50]
        assert [p.remaining_item_count for p in pages] == [150, 50, None]
        assert {p.resource_version for p in pages} == {rv}
        assert pages[2].continue_token == ""
        # each page was asked for with the token the server put in the previous one
        assert [(c.limit, c.continue_token) for c in lw.list_calls] == [
            (100, ""), (100, pages[0].continue_token), (100, pages[1].continue_token)]
        first, second = (decode_continue(p.continue_token) for p in pages[:2])
        assert (first["v"], first["rv"], first["start"].lstrip("/")) == (
            "meta.k8s.io/v1", int(rv), "cm099\x00")
        assert (second["v"], second["rv"], second["start"].lstrip("/")) == (
            "meta.k8s.io/v1", int(rv), "cm199\x00")
        assert store.replace_rvs == [rv]
        assert sorted(store.items) == [f"{namespace}/{n}" for n in names]
        assert store.items == await server_objects(real_client, namespace)
        assert lw.watch_calls[0].resource_version == rv
    assert (refl.stats.lists, refl.stats.relists, refl.stats.errors) == (1, 0, 0)


async def test_list_pages_report_remaining_items_and_add_up_to_the_unpaged_list(
    real_client: KubeClient, namespace: str
) -> None:
    names = [f"cm{i:03d}" for i in range(250)]
    await create_configmaps(real_client, namespace, names)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    raw = await real_client.request("GET", path, params={"limit": "100"})
    rv = raw["metadata"]["resourceVersion"]
    assert raw["metadata"] == {
        "resourceVersion": rv, "continue": raw["metadata"]["continue"], "remainingItemCount": 150}
    assert [i["metadata"]["name"] for i in raw["items"]] == names[:100]

    # the same first page through KubeClient, pinned to that version
    first = await real_client.list(CONFIGMAPS, namespace, ListOptions(
        limit=100, resource_version=rv, resource_version_match="Exact"))
    assert (first.resource_version, first.continue_token, first.remaining_item_count) == (
        rv, raw["metadata"]["continue"], 150)
    assert first.kind == "ConfigMap"
    assert first.items == [{**i, "kind": "ConfigMap", "apiVersion": "v1"} for i in raw["items"]]

    pages = [first]
    while pages[-1].continue_token:
        pages.append(await real_client.list(CONFIGMAPS, namespace, ListOptions(
            limit=100, continue_token=pages[-1].continue_token)))
    assert [(len(p.items), p.remaining_item_count, bool(p.continue_token)) for p in pages] == [
        (100, 150, True), (100, 50, True), (50, None, False)]
    assert {p.resource_version for p in pages} == {rv}

    unpaged = await real_client.list(CONFIGMAPS, namespace, ListOptions(
        resource_version=rv, resource_version_match="Exact"))
    assert unpaged.continue_token == ""
    assert unpaged.remaining_item_count is None
    assert [o for p in pages for o in p.items] == unpaged.items
    assert [name_of(o) for o in unpaged.items] == names


# -- watch: resume, bookmarks -----------------------------------------------------------------


async def test_reflector_follows_writes_and_resumes_server_ended_watches_without_relisting(
    real_client: KubeClient, namespace: str
) -> None:
    objs = {name_of(o): o for o in await create_configmaps(
        real_client, namespace, ["a", "b", "c"])}
    lw = recorder(real_client, namespace)
    store = MirrorStore()
    # watch_timeout=1: the server ends every watch after one second
    refl = Reflector(lw, store, watch_timeout=1, backoff=fast_backoff(), name="resume")
    async with refl:
        await eventually(refl.has_synced, what="synced")
        for round_ in range(3):
            watches = len(lw.watch_calls)
            await eventually(more_watches_than(lw, watches), what="a new watch")
            created = await real_client.create(
                CONFIGMAPS, configmap(f"new{round_}"), namespace)
            objs[name_of(created)] = created
            objs["a"] = await set_data(real_client, objs["a"], namespace, {"round": str(round_)})
            victim = ["b", "c", "new0"][round_]
            await real_client.delete(CONFIGMAPS, victim, namespace)
            del objs[victim]
            mirrored = {f"{namespace}/{n}": o for n, o in objs.items()}
            await eventually(holds(store, mirrored), what=f"round {round_} applied")
            assert store.items == await server_objects(real_client, namespace)
        await eventually(lambda: sum(s.ended for s in lw.streams) >= 3,
                         what="three watches ended by the server")
        streams = list(lw.streams)
        calls = lw.watch_calls[:len(streams)]
    assert store.calls == ["replace"] + ["add", "update", "delete"] * 3
    assert sorted(store.items) == sorted(f"{namespace}/{n}" for n in objs)
    assert (refl.stats.lists, refl.stats.relists, refl.stats.errors) == (1, 0, 0)
    assert len(lw.list_calls) == 1
    assert refl.stats.events == 9
    # every watch resumed exactly where the one before left off
    expected = lw.list_results[0].resource_version
    for call, stream in zip(calls, streams, strict=True):
        assert call.resource_version == expected
        assert call.allow_watch_bookmarks
        assert call.timeout_seconds in (1, 2)
        for event in stream.events:
            assert event["type"] in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
            expected = rv_of(event["object"])
    assert all(s.ended for s in streams[:-1])


async def test_bookmarks_move_the_reflector_on_without_events_in_its_namespace(
    real_client: KubeClient, namespace: str
) -> None:
    await real_client.create(CONFIGMAPS, configmap("only"), namespace)
    other = await create_namespace(real_client)
    lw = recorder(real_client, namespace)
    store = MirrorStore()
    # the server sends a bookmark 2 s before a watch's timeout (3-5 s here)
    refl = Reflector(lw, store, watch_timeout=3, backoff=fast_backoff(), name="bookmarks")
    async with refl:
        await eventually(lambda: len(lw.watch_calls) == 1, what="watch started")
        list_rv = refl.last_sync_resource_version
        elsewhere = await real_client.create(CONFIGMAPS, configmap("elsewhere"), other)
        await eventually(lambda: refl.stats.bookmarks >= 1, within=10, what="a bookmark")
        bookmark = next(e for s in lw.streams for e in s.events if e["type"] == "BOOKMARK")
        assert int(refl.last_sync_resource_version) >= int(rv_of(elsewhere)) > int(list_rv)
    assert bookmark == {"type": "BOOKMARK", "object": {
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"resourceVersion": rv_of(bookmark["object"])}}}
    assert int(rv_of(bookmark["object"])) >= int(rv_of(elsewhere))
    assert {e["type"] for s in lw.streams for e in s.events} == {"BOOKMARK"}
    assert refl.stats.events == 0
    assert store.calls == ["replace"]
    assert list(store.items) == [f"{namespace}/only"]


# -- streaming lists (sendInitialEvents) ------------------------------------------------------


async def test_streaming_watch_sends_initial_events_then_the_end_bookmark(
    api: ServerUnderTest,
) -> None:
    client, ns = api.client, api.namespace
    created = await create_configmaps(client, ns, ["a", "b", "c"])
    stream = await client.watch(CONFIGMAPS, ns, ListOptions(
        send_initial_events=True, resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True, timeout_seconds=10))
    try:
        initial = [await stream.__anext__() for _ in range(4)]
        listed_after = await client.list(CONFIGMAPS, ns, ListOptions())
        live = await client.create(CONFIGMAPS, configmap("d"), ns)
        following = await stream.__anext__()
    finally:
        await stream.aclose()
    assert summary(initial[:3]) == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert [e["object"] for e in initial[:3]] == created
    end = initial[3]
    end_rv = rv_of(end["object"])
    assert end == {"type": "BOOKMARK", "object": {
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"resourceVersion": end_rv,
                     "annotations": {INITIAL_EVENTS_END_ANNOTATION: "true"}}}}
    newest = max(rv_index(api, rv_of(o)) for o in created)
    assert newest <= rv_index(api, end_rv) <= rv_index(api, listed_after.resource_version)
    assert following == {"type": "ADDED", "object": live}


async def test_streaming_watch_without_bookmarks_sends_no_end_bookmark(
    api: ServerUnderTest, request: pytest.FixtureRequest
) -> None:
    await create_configmaps(api.client, api.namespace, ["a", "b"])
    stream = await api.client.watch(CONFIGMAPS, api.namespace, ListOptions(
        send_initial_events=True, resource_version_match="NotOlderThan", timeout_seconds=2))
    assert summary(await collect(stream)) == [("ADDED", "a"), ("ADDED", "b")]


@pytest.mark.parametrize("server", ["watch-cache", "etcd"])
async def test_reflector_streaming_list_syncs_through_the_end_bookmark(
    server: str, request: pytest.FixtureRequest
) -> None:
    env: EnvTest = request.getfixturevalue("real_env" if server == "watch-cache"
                                           else "uncached_env")
    async with KubeClient(env.client_config) as client:
        ns = await create_namespace(client)
        names = [f"cm{i}" for i in range(20)]
        await create_configmaps(client, ns, names)
        lw = recorder(client, ns)
        store = MirrorStore()
        refl = Reflector(lw, store, streaming_list=True, watch_timeout=60,
                         backoff=fast_backoff(), name="streaming")
        async with refl:
            await eventually(refl.has_synced, what="streaming sync")
            stream = lw.streams[0]
            end = stream.events[-1]
            assert end["type"] == "BOOKMARK"
            assert end["object"]["metadata"]["annotations"] == {
                INITIAL_EVENTS_END_ANNOTATION: "true"}
            assert store.replace_rvs == [rv_of(end["object"])]
            assert summary(stream.events[:-1]) == [("ADDED", n) for n in sorted(names)]
            assert store.items == await server_objects(client, ns)
            # the same stream goes on as the watch
            live = await client.create(CONFIGMAPS, configmap("live"), ns)
            await eventually(caught_up(refl, rv_of(live)), what="live event applied")
            assert store.items[f"{ns}/live"] == live
            assert len(lw.watch_calls) == 1
        call = lw.watch_calls[0]
        assert (call.send_initial_events, call.resource_version_match,
                call.allow_watch_bookmarks, call.resource_version) == (
            True, "NotOlderThan", True, "")
        assert lw.list_calls == []
        assert store.calls == ["replace", "add"]
        assert refl.streaming_list
        assert (refl.stats.lists, refl.stats.watches, refl.stats.errors) == (1, 0, 0)


async def test_watchlist_gate_off_rejects_streaming_and_the_reflector_falls_back_to_list(
    no_watchlist_env: EnvTest,
) -> None:
    async with KubeClient(no_watchlist_env.client_config) as client:
        ns = await create_namespace(client)
        await create_configmaps(client, ns, ["a", "b"])
        with pytest.raises(errors.InvalidError) as caught:
            await client.watch(CONFIGMAPS, ns, ListOptions(
                send_initial_events=True, resource_version_match="NotOlderThan",
                allow_watch_bookmarks=True))
        reason = "sendInitialEvents is forbidden for watch unless the WatchList feature gate " \
                 "is enabled"
        assert (caught.value.code, caught.value.reason) == (422, "Invalid")
        assert caught.value.status["message"] == (
            f"{INVALID_LIST_OPTIONS}sendInitialEvents: Forbidden: {reason}")
        lw = recorder(client, ns)
        store = MirrorStore()
        refl = Reflector(lw, store, streaming_list=True, backoff=fast_backoff(), name="fallback")
        async with refl:
            await eventually(lambda: len(lw.watch_calls) == 2, what="fallback watch")
            assert store.items == await server_objects(client, ns)
    first, second = lw.watch_calls
    assert first.send_initial_events
    assert not second.send_initial_events
    assert second.resource_version == lw.list_results[0].resource_version
    assert [(c.limit, c.continue_token) for c in lw.list_calls] == [(500, "")]
    assert not refl.streaming_list
    assert (refl.stats.lists, refl.stats.relists, refl.stats.errors) == (1, 0, 0)


# -- real 410 Gone ----------------------------------------------------------------------------


async def test_compaction_expires_continue_tokens_exact_lists_and_watches(
    uncached_env: EnvTest, uncached_client: KubeClient
) -> None:
    client = uncached_client
    ns = await create_namespace(client)
    await create_configmaps(client, ns, [f"cm{i:02d}" for i in range(30)])
    first = await client.list(CONFIGMAPS, ns, ListOptions(limit=10))
    before = first.resource_version
    assert first.remaining_item_count == 20
    # before compaction the old version is readable
    exact = await client.list(CONFIGMAPS, ns, ListOptions(
        resource_version=before, resource_version_match="Exact"))
    assert len(exact.items) == 30
    await client.delete(CONFIGMAPS, "cm00", ns)
    await client.create(CONFIGMAPS, configmap("extra"), ns)
    revision = await compact_etcd(uncached_env)
    assert revision == int(before) + 2

    with pytest.raises(errors.GoneError) as caught:
        await client.list(CONFIGMAPS, ns, ListOptions(limit=10,
                                                      continue_token=first.continue_token))
    status = caught.value.status
    assert (caught.value.code, caught.value.reason, status["message"]) == (
        410, "Expired", CONTINUE_TOO_OLD)
    # the server offers a token to go on inconsistently: no version, same position
    assert decode_continue(status["metadata"]["continue"]) == {
        "v": "meta.k8s.io/v1", "rv": -1, "start": "cm09\x00"}

    with pytest.raises(errors.GoneError) as caught:
        await client.list(CONFIGMAPS, ns, ListOptions(
            resource_version=before, resource_version_match="Exact"))
    assert (caught.value.code, caught.value.reason, caught.value.status["message"]) == (
        410, "Expired", LIST_TOO_OLD)

    newer = await client.list(CONFIGMAPS, ns, ListOptions(
        resource_version=before, resource_version_match="NotOlderThan"))
    assert int(newer.resource_version) == revision
    assert len(newer.items) == 30

    # a watch from a compacted version: HTTP 200, then one ERROR event, then the end
    for start in (before, "1"):
        stream = await client.watch(CONFIGMAPS, ns, ListOptions(
            resource_version=start, timeout_seconds=10))
        events = await collect(stream)
        assert events == [expired_event(WATCH_TOO_OLD)]
        assert isinstance(errors.api_error_from_status(events[0]["object"]), errors.GoneError)


async def test_reflector_falls_back_to_one_unpaged_list_when_its_continue_token_is_compacted(
    uncached_env: EnvTest, uncached_client: KubeClient
) -> None:
    client = uncached_client
    ns = await create_namespace(client)
    await create_configmaps(client, ns, [f"cm{i:02d}" for i in range(25)])
    lw = recorder(client, ns)

    async def compact_after_first_page(n: int) -> None:
        if n == 1:
            await client.delete(CONFIGMAPS, "cm20", ns)
            await compact_etcd(uncached_env)

    lw.after_list = compact_after_first_page
    store = MirrorStore()
    refl = Reflector(lw, store, page_size=10, backoff=fast_backoff(), name="compacted-pages")
    async with refl:
        await eventually(refl.has_synced, what="synced")
        assert store.items == await server_objects(client, ns)
    token = lw.list_results[0].continue_token
    assert [(c.limit, c.continue_token) for c in lw.list_calls] == [
        (10, ""), (10, token), (0, "")]
    assert [len(p.items) for p in lw.list_results] == [10, 24]
    assert f"{ns}/cm20" not in store.items
    assert len(store.items) == 24
    assert store.replace_rvs == [lw.list_results[1].resource_version]
    assert (refl.stats.lists, refl.stats.relists, refl.stats.errors) == (1, 0, 0)


async def test_reflector_relists_when_its_watch_version_was_compacted_and_loses_no_delete(
    uncached_env: EnvTest, uncached_client: KubeClient
) -> None:
    client = uncached_client
    ns = await create_namespace(client)
    objs = {name_of(o): o for o in await create_configmaps(
        client, ns, [f"cm{i}" for i in range(6)])}
    lw = recorder(client, ns)
    store = MirrorStore()
    refl = Reflector(lw, store, watch_timeout=1, backoff=fast_backoff(), name="compacted-watch")
    async with refl:
        await eventually(lambda: len(lw.watch_calls) == 1, what="first watch")
        away_from = refl.last_sync_resource_version
        lw.gate.clear()  # the reflector is away once its current watch ends
        await eventually(lambda: lw.waiting == 1, what="reflector disconnected")
        watches_before = len(lw.watch_calls)
        for name in ("cm0", "cm1"):
            await client.delete(CONFIGMAPS, name, ns)
        changed = await set_data(client, objs["cm2"], ns, {"k": "changed"})
        added = await client.create(CONFIGMAPS, configmap("late"), ns)
        assert await compact_etcd(uncached_env) >= int(rv_of(added))
        lw.gate.set()
        await eventually(lambda: refl.stats.relists == 1 and refl.stats.lists == 2,
                         what="relist after 410")
        await eventually(lambda: len(lw.watch_calls) > watches_before + 1, what="new watch")
        assert store.items == await server_objects(client, ns)
    resumed = lw.watch_calls[watches_before]
    assert resumed.resource_version == away_from
    assert lw.streams[watches_before].events == [expired_event(WATCH_TOO_OLD)]
    assert len(lw.list_calls) == 2
    assert store.replace_removed == [set(), {f"{ns}/cm0", f"{ns}/cm1"}]
    assert store.items[f"{ns}/cm2"] == changed
    assert store.items[f"{ns}/late"] == added
    assert sorted(store.items) == sorted(f"{ns}/{n}" for n in ("cm2", "cm3", "cm4", "cm5", "late"))
    assert refl.stats.errors == 0


async def test_watch_resumed_at_a_delete_compacted_to_its_own_revision_fails_until_relist(
    uncached_env: EnvTest, uncached_client: KubeClient
) -> None:
    """etcd keeps a compacted revision's own changes but not the state before them.

    A watch starting exactly at the compaction revision, whose first change is a
    delete, gets no 410: kube-apiserver cannot build the DELETED event (it needs
    the previous state) and answers with a 500 ERROR event, the same on every try.
    """
    client = uncached_client
    ns = await create_namespace(client)
    await create_configmaps(client, ns, [f"cm{i}" for i in range(4)])
    lw = recorder(client, ns)
    store = MirrorStore()
    refl = Reflector(lw, store, watch_timeout=1, backoff=fast_backoff(), name="prevkv")
    async with refl:
        await eventually(lambda: len(lw.watch_calls) == 1, what="first watch")
        away_from = refl.last_sync_resource_version
        lw.gate.clear()
        await eventually(lambda: lw.waiting == 1, what="reflector disconnected")
        watches_before = len(lw.watch_calls)
        await client.delete(CONFIGMAPS, "cm0", ns)
        stream = await client.watch(CONFIGMAPS, ns, ListOptions(
            resource_version=away_from, timeout_seconds=10))
        (deleted,) = await collect(stream, 1)
        delete_rv = int(rv_of(deleted["object"]))
        assert (deleted["type"], name_of(deleted["object"]), delete_rv) == (
            "DELETED", "cm0", int(away_from) + 1)
        await compact_etcd(uncached_env, delete_rv)
        cause = (f'etcd event received with PrevKv=nil (key="/registry/configmaps/{ns}/cm0", '
                 f"modRevision={delete_rv}, type=DELETE)")
        internal_error = {"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"Internal error occurred: {cause}", "reason": "InternalError",
            "details": {"causes": [{"message": cause}]}, "code": 500}}
        for _ in range(2):
            stream = await client.watch(CONFIGMAPS, ns, ListOptions(
                resource_version=away_from, timeout_seconds=10))
            assert await collect(stream) == [internal_error]
        lw.gate.set()
        await eventually(lambda: refl.stats.relists == 1 and refl.stats.lists == 2,
                         what="relist after the same ERROR event twice")
        relist_rv = lw.list_results[-1].resource_version
        await eventually(lambda: lw.watch_calls[-1].resource_version == relist_rv,
                         what="watch from the relist")
        assert store.items == await server_objects(client, ns)
    retried = lw.watch_calls[watches_before:-1]
    assert [c.resource_version for c in retried] == [away_from, away_from]
    assert [s.events for s in lw.streams[watches_before:-1]] == [[internal_error]] * 2
    assert refl.stats.errors == 1
    assert store.replace_removed == [set(), {f"{ns}/cm0"}]
    assert sorted(store.items) == [f"{ns}/cm{i}" for i in (1, 2, 3)]


async def test_reinitialised_watch_cache_expires_older_versions_and_the_reflector_relists(
    no_watchlist_env: EnvTest,
) -> None:
    env = no_watchlist_env
    async with KubeClient(env.client_config) as client:
        ns = await create_namespace(client)
        objs = {name_of(o): o for o in await create_configmaps(
            client, ns, [f"cm{i}" for i in range(5)])}
        lw = recorder(client, ns)
        store = MirrorStore()
        refl = Reflector(lw, store, watch_timeout=1, backoff=fast_backoff(), name="restarted")
        async with refl:
            await eventually(lambda: len(lw.watch_calls) == 1, what="first watch")
            away_from = refl.last_sync_resource_version
            lw.gate.clear()
            await eventually(lambda: lw.waiting == 1, what="reflector disconnected")
            watches_before = len(lw.watch_calls)
            await client.delete(CONFIGMAPS, "cm0", ns)
            await client.delete(CONFIGMAPS, "cm1", ns)
            last = await set_data(client, objs["cm2"], ns, {"k": "changed"})
            # a new apiserver initialises its watch cache at the current revision
            await env.arestart_apiserver()
            async with KubeClient(env.client_config) as fresh:
                for start in ("1", away_from):
                    stream = await fresh.watch(CONFIGMAPS, ns, ListOptions(
                        resource_version=start, timeout_seconds=10))
                    (event,) = await collect(stream)
                    message = event["object"]["message"]
                    match = re.fullmatch(rf"too old resource version: {start} \((\d+)\)", message)
                    assert match is not None, message
                    assert int(match[1]) >= int(rv_of(last))
                    assert event == expired_event(message)
            lw.gate.set()
            await eventually(lambda: refl.stats.relists == 1 and refl.stats.lists == 2,
                             within=15, what="relist after 410")
            relist_rv = lw.list_results[-1].resource_version
            await eventually(lambda: lw.watch_calls[-1].resource_version == relist_rv,
                             what="watch from the relist")
            assert store.items == await server_objects(client, ns)
    # until the relist, the reflector asked to resume where it had left off, and the
    # restarted server answered that with one ERROR event
    resumed = lw.watch_calls[watches_before:-1]
    assert resumed
    assert {c.resource_version for c in resumed} == {away_from}
    expired = [s.events for s in lw.streams[watches_before:-1]]
    assert len(expired) == 1
    ((event,),) = expired
    assert re.fullmatch(rf"too old resource version: {away_from} \(\d+\)",
                        event["object"]["message"])
    assert event == expired_event(event["object"]["message"])
    assert store.replace_removed == [set(), {f"{ns}/cm0", f"{ns}/cm1"}]
    assert store.items[f"{ns}/cm2"] == last
    assert sorted(store.items) == [f"{ns}/cm{i}" for i in (2, 3, 4)]


# -- resourceVersionMatch ---------------------------------------------------------------------


async def test_list_exact_returns_the_state_at_that_version(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    before = {name_of(o): o for o in await create_configmaps(client, ns, ["a", "b"])}
    rv = (await client.list(CONFIGMAPS, ns, ListOptions())).resource_version
    await client.delete(CONFIGMAPS, "a", ns)
    await client.create(CONFIGMAPS, configmap("c"), ns)
    await set_data(client, before["b"], ns, {"k": "later"})
    then = await client.list(CONFIGMAPS, ns, ListOptions(
        resource_version=rv, resource_version_match="Exact"))
    assert then.resource_version == rv
    assert then.items == [before["a"], before["b"]]


async def test_list_not_older_than_returns_the_current_state(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    await client.create(CONFIGMAPS, configmap("a"), ns)
    rv = (await client.list(CONFIGMAPS, ns, ListOptions())).resource_version
    b = await client.create(CONFIGMAPS, configmap("b"), ns)
    now = await client.list(CONFIGMAPS, ns, ListOptions(
        resource_version=rv_of(b), resource_version_match="NotOlderThan"))
    assert [name_of(o) for o in now.items] == ["a", "b"]
    assert now.items[1] == b
    assert rv_index(api, now.resource_version) >= rv_index(api, rv_of(b))
    # an older version: at least that state; b only once the answer is at or past it (the
    # real server's watch cache may not have seen b yet: CI caught ["a"] once)
    older = await client.list(CONFIGMAPS, ns, ListOptions(
        resource_version=rv, resource_version_match="NotOlderThan"))
    caught_up = rv_index(api, older.resource_version) >= rv_index(api, rv_of(b))
    assert rv_index(api, older.resource_version) >= rv_index(api, rv)
    assert [name_of(o) for o in older.items] == (["a", "b"] if caught_up else ["a"])


INVALID_MATCH_CASES = {
    "exact-without-rv": (False, "", "Exact",
                         "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden "
                         "unless resourceVersion is provided"),
    "not-older-than-without-rv": (False, "", "NotOlderThan",
                                  "resourceVersionMatch: Forbidden: resourceVersionMatch is "
                                  "forbidden unless resourceVersion is provided"),
    "exact-at-rv-0": (False, "0", "Exact",
                      'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is '
                      'forbidden for resourceVersion "0"'),
    "unknown-match": (False, "current", "Bogus",
                      'resourceVersionMatch: Unsupported value: "Bogus": supported values: '
                      '"Exact", "NotOlderThan", ""'),
    "watch-without-send-initial-events": (
        True, "", "NotOlderThan",
        "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless "
        "sendInitialEvents is provided"),
}


@pytest.mark.parametrize("case", list(INVALID_MATCH_CASES))
async def test_invalid_resource_version_match_is_rejected(
    api: ServerUnderTest, case: str, request: pytest.FixtureRequest
) -> None:
    watch, rv, match, detail = INVALID_MATCH_CASES[case]
    if rv == "current":
        rv = (await api.client.list(CONFIGMAPS, api.namespace, ListOptions())).resource_version
    opts = ListOptions(resource_version=rv, resource_version_match=match)
    call = api.client.watch if watch else api.client.list
    with pytest.raises(errors.InvalidError) as caught:
        await call(CONFIGMAPS, api.namespace, opts)
    status = caught.value.status
    assert (caught.value.code, caught.value.reason) == (422, "Invalid")
    assert status["message"] == INVALID_LIST_OPTIONS + detail
    field_message = detail.removeprefix("resourceVersionMatch: ")
    assert status["details"]["causes"] == [{
        "reason": "FieldValueNotSupported" if match == "Bogus" else "FieldValueForbidden",
        "message": field_message, "field": "resourceVersionMatch"}]


async def test_not_older_than_a_future_version_times_out(
    api: ServerUnderTest, request: pytest.FixtureRequest
) -> None:
    current = (await api.client.list(CONFIGMAPS, api.namespace, ListOptions())).resource_version
    if api.kind == REAL:
        future = str(int(current) + 1000)
    else:
        prefix, index = current.split(".")
        future = f"{prefix}.{int(index) + 1000}"
    with pytest.raises(errors.ApiError) as caught:
        await api.client.list(CONFIGMAPS, api.namespace, ListOptions(
            resource_version=future, resource_version_match="NotOlderThan"))
    assert type(caught.value) is errors.ApiError
    status = caught.value.status
    assert (caught.value.code, caught.value.reason) == (504, "Timeout")
    assert re.fullmatch(rf"Timeout: Too large resource version: {future}, current: \S+",
                        status["message"]), status["message"]
    assert status["details"] == {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1}


# -- selectors --------------------------------------------------------------------------------


async def test_label_and_field_selectors_on_list(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    await create_configmaps(client, ns, ["a", "c"], labels={"app": "x"})
    await create_configmaps(client, ns, ["b"], labels={"app": "y"})

    async def names(
        namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[str]:
        listed = await client.list(CONFIGMAPS, namespace, ListOptions(
            label_selector=label_selector, field_selector=field_selector))
        return [f"{o['metadata']['namespace']}/{name_of(o)}" for o in listed.items]

    assert await names(ns, label_selector="app=x") == [f"{ns}/a", f"{ns}/c"]
    assert await names(ns, label_selector="app in (x,y),app!=x") == [f"{ns}/b"]
    assert await names(ns, label_selector="!app") == []
    assert await names(ns, field_selector="metadata.name=b") == [f"{ns}/b"]
    assert await names(ns, label_selector="app=x", field_selector="metadata.name!=a") == [
        f"{ns}/c"]
    assert await names(None, field_selector=f"metadata.namespace={ns}") == [
        f"{ns}/a", f"{ns}/b", f"{ns}/c"]
    assert await names(None, field_selector=f"metadata.namespace={ns},metadata.name=c") == [
        f"{ns}/c"]
    assert await names(ns, field_selector="metadata.namespace=elsewhere") == []


async def test_label_and_field_selectors_on_watch(api: ServerUnderTest) -> None:
    client, ns = api.client, api.namespace
    objs = {name_of(o): o for o in await create_configmaps(client, ns, ["a", "c"], {"app": "x"})}
    objs |= {name_of(o): o for o in await create_configmaps(client, ns, ["b"], {"app": "y"})}
    rv = (await client.list(CONFIGMAPS, ns, ListOptions())).resource_version
    by_label = await client.watch(CONFIGMAPS, ns, ListOptions(
        resource_version=rv, label_selector="app=x", timeout_seconds=20))
    by_name = await client.watch(CONFIGMAPS, None, ListOptions(
        resource_version=rv, field_selector=f"metadata.namespace={ns},metadata.name=b",
        timeout_seconds=20))
    await relabel(client, objs["a"], ns, {"app": "y"})  # leaves the label selection
    b = await relabel(client, objs["b"], ns, {"app": "x"})  # enters it
    c = await set_data(client, objs["c"], ns, {"k": "2"})
    await create_configmaps(client, ns, ["d"], {"app": "y"})  # never selected
    await client.delete(CONFIGMAPS, "c", ns)
    b = await set_data(client, b, ns, {"k": "3"})
    label_events = await collect(by_label, 5)
    name_events = await collect(by_name, 2)
    assert summary(label_events) == [
        ("DELETED", "a"), ("ADDED", "b"), ("MODIFIED", "c"), ("DELETED", "c"), ("MODIFIED", "b")]
    assert label_events[2]["object"] == c
    assert label_events[4]["object"] == b
    assert summary(name_events) == [("MODIFIED", "b"), ("MODIFIED", "b")]
    assert name_events[1]["object"] == b


async def test_object_leaving_a_selection_is_deleted_with_its_last_matching_state(
    api: ServerUnderTest, request: pytest.FixtureRequest
) -> None:
    client, ns = api.client, api.namespace
    (a,) = await create_configmaps(client, ns, ["a"], {"app": "x"})
    stream = await client.watch(CONFIGMAPS, ns, ListOptions(
        resource_version=rv_of(a), label_selector="app=x", timeout_seconds=20))
    moved = await relabel(client, a, ns, {"app": "y"})
    (event,) = await collect(stream, 1)
    assert event["type"] == "DELETED"
    assert event["object"]["metadata"]["resourceVersion"] == rv_of(moved)
    assert event["object"]["metadata"]["labels"] == {"app": "x"}


@pytest.mark.parametrize("call", ["list", "watch"])
async def test_unsupported_field_selector_is_a_bad_request(
    api: ServerUnderTest, call: str, request: pytest.FixtureRequest
) -> None:
    await api.client.create(CONFIGMAPS, configmap("a"), api.namespace)
    opts = ListOptions(field_selector="spec.bogus=x", timeout_seconds=2)

    async def attempt() -> list[Any]:
        if call == "list":
            return list((await api.client.list(CONFIGMAPS, api.namespace, opts)).items)
        return await collect(await api.client.watch(CONFIGMAPS, api.namespace, opts))

    with pytest.raises(errors.BadRequestError) as caught:
        await attempt()
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert caught.value.status["message"] == (
        '"spec.bogus" is not a known field selector: only "metadata.name", "metadata.namespace"')


async def test_reflector_over_a_selecting_list_watch_drops_objects_that_stop_matching(
    real_client: KubeClient, namespace: str
) -> None:
    ns = namespace
    resolved = await ListWatch.for_resource(real_client, "cm", ns)
    assert (resolved.gvr, resolved.namespace) == (CONFIGMAPS, ns)
    cluster_scoped = await ListWatch.for_resource(real_client, "namespaces", ns)
    assert (cluster_scoped.gvr, cluster_scoped.namespace) == (NAMESPACES, None)

    objs = {name_of(o): o for o in await create_configmaps(real_client, ns, ["a", "c"],
                                                            {"app": "x"})}
    objs |= {name_of(o): o for o in await create_configmaps(real_client, ns, ["b"],
                                                             {"app": "y"})}
    # "zz-...": its keys sort after ours whatever other tests left on the shared server,
    # so the pages below always end with the same empty page
    other = await create_namespace(real_client, prefix="zz")
    await create_configmaps(real_client, other, ["a"], {"app": "x"})
    # every namespace, narrowed to ours by a field selector, and by label
    lw = recorder(real_client, None, label_selector="app=x",
                  field_selector=f"metadata.namespace={ns}")
    store = MirrorStore()
    refl = Reflector(lw, store, page_size=1, backoff=fast_backoff(), name="selecting")
    async with refl:
        await eventually(refl.has_synced, what="synced")
        assert sorted(store.items) == [f"{ns}/a", f"{ns}/c"]
        # kube-apiserver 1.37 narrows only the first page to the namespace's keys: its
        # continue token is relative to them, the next pages read it against every
        # namespace's keys, so they start over and repeat the first page
        assert [[name_of(o) for o in p.items] for p in lw.list_results] == [
            ["a"], ["a"], ["c"], []]
        assert [decode_continue(p.continue_token)["start"] for p in lw.list_results[:3]] == [
            "/a\x00", f"/{ns}/a\x00", f"/{ns}/c\x00"]
        await relabel(real_client, objs["a"], ns, {"app": "y"})
        b = await relabel(real_client, objs["b"], ns, {"app": "x"})
        await create_configmaps(real_client, other, ["b"], {"app": "x"})
        last = await set_data(real_client, objs["c"], ns, {"k": "2"})
        await eventually(caught_up(refl, rv_of(last)), what="changes applied")
    assert store.calls == ["replace", "delete", "add", "update"]
    assert store.items == {f"{ns}/b": b, f"{ns}/c": last}
