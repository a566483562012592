"""Crashes of the real control plane under write load: mirrors converge, no delete is lost.

Each test gets a private etcd + kube-apiserver (``EnvTest``), since it kills one of
them with SIGKILL. A writer creates, updates and deletes configmaps in one
namespace at ~200 writes/s (several paced tasks, each owning its names, so no
write races another); a write counts only if the server acknowledged it. Meanwhile
a ``SharedInformer`` and a ``Watcher`` (or ``kubemirror serve``, in a subprocess)
mirror the namespace, with their default retry backoff. Mid-run kube-apiserver, or
etcd, is killed and restarted about a second later. Once the writer stops:

- the mirror must equal a fresh LIST of the real server (names and
  resourceVersions), and the informer's handler calls, replayed onto a dict, too
  (no impossible call: no add of a known key, no delete of an unknown one);
- zero lost deletes: every object whose DELETE was acknowledged is absent from
  every mirror, and the informer either delivered ``on_delete`` (object or
  tombstone) for it or never had it;
- the ``Watcher``'s change reports add up: initial count + created - deleted is
  the store's size.

The figures (writes acknowledged and failed, outage length, time to converge) are
printed; see them with ``pytest -s``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import random
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from kubemirror import errors, keys
from kubemirror.client import KubeClient, ListOptions
from kubemirror.envtest import Assets, EnvTest
from kubemirror.informer import SharedInformer
from kubemirror.listwatch import ListWatch
from kubemirror.multicluster.resource_version import parse_memory_resource_version
from kubemirror.stores import indexed_store
from kubemirror.watcher import ChangeStats, Watcher, WatcherConfig
from tests.cli.conftest import Running, cli_command, cli_env
from tests.polling import eventually
from tests.real_apiserver.conftest import CONFIGMAPS, configmap, create_namespace

pytestmark = [pytest.mark.slow]

RATE = 200.0  # writes per second, all workers together
WORKERS = 16  # concurrent requests at most
SEEDED = 60  # configmaps before the mirrors start
CONVERGE_WITHIN = 30.0


@pytest_asyncio.fixture
async def env(envtest_assets: Assets) -> AsyncIterator[EnvTest]:
    """A private control plane: this test crashes its components."""
    async with EnvTest(envtest_assets) as private:
        yield private


# -- the writer -------------------------------------------------------------------------------


@dataclasses.dataclass
class Ledger:
    """What the writer did, as far as the server acknowledged it."""

    acked: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    failed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)  # a message per reason
    deleted: set[str] = dataclasses.field(default_factory=set)  # DELETE acknowledged
    live: set[str] = dataclasses.field(default_factory=set)  # created, not deleted
    first_failure: float | None = None
    last_failure: float | None = None
    started: float | None = None
    last_ack: float | None = None
    longest_stall: float = 0.0  # the longest time without an acknowledged write
    seconds: float = 0.0

    @property
    def writes(self) -> int:
        return sum(self.acked.values())

    def ack(self, op: str, now: float) -> None:
        self.acked[op] += 1
        if self.last_ack is not None:
            self.longest_stall = max(self.longest_stall, now - self.last_ack)
        self.last_ack = now

    def fail(self, op: str, exc: errors.KubemirrorError, now: float) -> None:
        self.failed[op] += 1
        code = getattr(exc, "code", None)
        reason = type(exc).__name__ + (f" {code}" if code else "")
        self.reasons[reason] += 1
        self.examples.setdefault(reason, str(exc)[:160])
        if self.first_failure is None:
            self.first_failure = now
        self.last_failure = now

    def describe(self) -> str:
        window = (
            f"{self.last_failure - self.first_failure:.2f} s"
            if self.first_failure is not None and self.last_failure is not None
            else "none"
        )
        return (
            f"{self.writes} writes acknowledged in {self.seconds:.1f} s "
            f"({self.writes / max(self.seconds, 1e-9):.0f}/s; {dict(self.acked)}), "
            f"{sum(self.failed.values())} failed ({dict(self.reasons)}; e.g. {self.examples}), "
            f"failures spanning {window}, longest stall without an acknowledged write "
            f"{self.longest_stall:.2f} s"
        )


async def write_load(
    client: KubeClient,
    namespace: str,
    ledger: Ledger,
    *,
    rate: float = RATE,
    seconds: float = 8.0,
    longest: float = 60.0,
    enough: asyncio.Event | None = None,
    workers: int = WORKERS,
    seed: int = 0,
) -> None:
    """Creates (40%), updates (35%) and deletes (25%) at ``rate``/s for ``seconds``, and
    on until ``enough`` is set, ``longest`` seconds at most.

    Each worker owns its names (never reused), so the only failures are the server's.
    A write whose outcome is unknown (a timeout, a dropped connection, a 5xx) is not
    counted: a create may or may not exist, a delete may or may not have happened;
    such names are never written again.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    ledger.started = start
    end = start + seconds
    hard_end = start + longest
    budget = int(rate * longest)

    def going() -> bool:
        now = loop.time()
        if now >= hard_end or ledger.writes + sum(ledger.failed.values()) >= budget:
            return False
        return now < end or (enough is not None and not enough.is_set())

    slots = [start]  # the next free time slot: a stuck worker leaves its turns to the others
    seeded = sorted(ledger.live)

    async def worker(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        mine = seeded[w::workers]
        serial = 0
        while going():
            slot = max(slots[0], loop.time())
            slots[0] = slot + 1 / rate
            await asyncio.sleep(slot - loop.time())  # pacing only
            roll = rng.random()
            try:
                if not mine or roll < 0.40:
                    op = "create"
                    serial += 1
                    name = f"w{w}-{serial}"
                    await client.create(CONFIGMAPS, configmap(name, {"n": "0"}), namespace)
                    mine.append(name)
                    ledger.live.add(name)
                elif roll < 0.75:
                    op = "update"
                    name = rng.choice(mine)
                    # no resourceVersion: an unconditional update
                    body = configmap(name, {"n": str(rng.randrange(1 << 30))})
                    await client.replace(CONFIGMAPS, body, namespace)
                else:
                    op = "delete"
                    name = mine.pop(rng.randrange(len(mine)))
                    ledger.live.discard(name)  # unknown until acknowledged
                    await client.delete(CONFIGMAPS, name, namespace)
                    ledger.deleted.add(name)
            except errors.KubemirrorError as exc:
                ledger.fail(op, exc, loop.time())
                continue
            ledger.ack(op, loop.time())

    try:
        await asyncio.gather(*(worker(w) for w in range(workers)))
    finally:
        ledger.seconds = loop.time() - start


async def seed_configmaps(client: KubeClient, namespace: str, ledger: Ledger) -> None:
    for i in range(SEEDED):
        name = f"seed-{i}"
        await client.create(CONFIGMAPS, configmap(name), namespace)
        ledger.live.add(name)


# -- the faults ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Outage:
    seconds: float = 0.0  # from the kill to the component answering again
    started: float = 0.0
    writes_at_kill: int = 0
    writes_before: int = 0  # acknowledged when the restart completed

    def describe(self, ledger: Ledger) -> str:
        assert ledger.started is not None
        steady = self.writes_at_kill / max(self.started - ledger.started, 1e-9)
        return (f"{steady:.0f} writes/s acknowledged before the kill; outage "
                f"{self.seconds:.2f} s (kill, 1 s down, restart until ready)")


async def crash(
    ledger: Ledger,
    kill: Callable[[], None],
    restart: Callable[[], Awaitable[None]],
    *,
    after_writes: int = 300,
    writes_after: int = 200,
    down: float = 1.0,
) -> Outage:
    """Once the writer has ``after_writes`` acknowledged: kill, stay down ``down`` s,
    restart; return once ``writes_after`` more writes were acknowledged."""
    await eventually(lambda: ledger.writes >= after_writes, within=20,
                     what=f"{after_writes} writes acknowledged before the crash")
    loop = asyncio.get_running_loop()
    outage = Outage(started=loop.time(), writes_at_kill=ledger.writes)
    kill()
    await asyncio.sleep(down)  # the length of the outage, not a synchronisation
    await restart()
    outage.seconds = loop.time() - outage.started
    outage.writes_before = ledger.writes
    # generous: a loaded 2-core machine restarts kube-apiserver in 10 s or more
    await eventually(lambda: ledger.writes >= outage.writes_before + writes_after, within=45,
                     what=f"{writes_after} writes acknowledged after the restart")
    return outage


async def write_through_crash(
    writer: KubeClient,
    namespace: str,
    ledger: Ledger,
    kill: Callable[[], None],
    restart: Callable[[], Awaitable[None]],
    *,
    rate: float = RATE,
    after_writes: int = 300,
) -> Outage:
    """The writer at ``rate`` for 8 s at least, with the crash in the middle of it."""
    enough = asyncio.Event()
    load = asyncio.ensure_future(write_load(writer, namespace, ledger, rate=rate, enough=enough))
    try:
        outage = await crash(ledger, kill, restart, after_writes=after_writes)
    finally:
        enough.set()
        await load  # bounded in time and count
    return outage


# -- the mirrors ---------------------------------------------------------------------------------


class Replay:
    """The informer's handler calls applied to a dict; records every impossible call."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.ever_added: set[str] = set()
        self.delete_seen: set[str] = set()
        self.tombstones = 0
        self.problems: list[str] = []

    def on_add(self, obj: Any) -> None:
        key = keys.meta_namespace_key(obj)
        if key in self.state:
            self.problems.append(f"add of existing {key}")
        self.state[key] = obj["metadata"]["resourceVersion"]
        self.ever_added.add(key)

    def on_update(self, old: Any, new: Any) -> None:
        key = keys.meta_namespace_key(new)
        if key not in self.state:
            self.problems.append(f"update of unknown {key}")
        self.state[key] = new["metadata"]["resourceVersion"]

    def on_delete(self, obj: Any) -> None:
        if isinstance(obj, keys.DeletedFinalStateUnknown):
            self.tombstones += 1
            key = obj.key
        else:
            key = keys.meta_namespace_key(obj)
        if key not in self.state:
            self.problems.append(f"delete of unknown {key}")
        self.state.pop(key, None)
        self.delete_seen.add(key)


@dataclasses.dataclass
class Reports:
    """The ``Watcher``'s ``on_sync_complete`` and ``on_change`` reports, added up."""

    initial: int | None = None
    created: int = 0
    modified: int = 0
    deleted: int = 0

    def on_sync_complete(self, store: indexed_store.IndexedStore, count: int) -> None:
        self.initial = count

    def on_change(self, store: indexed_store.IndexedStore, stats: ChangeStats) -> None:
        self.created += stats.created
        self.modified += stats.modified
        self.deleted += stats.deleted

    def size(self) -> int | None:
        return None if self.initial is None else self.initial + self.created - self.deleted


@dataclasses.dataclass
class Mirrors:
    informer: SharedInformer
    replay: Replay
    watcher: Watcher
    reports: Reports
    namespace: str

    def informer_versions(self) -> dict[str, str]:
        return {keys.meta_namespace_key(o): o["metadata"]["resourceVersion"]
                for o in self.informer.get_indexer().list()}

    def reports_problem(self) -> str | None:
        """``None`` once the watcher's reports add up to its store's size."""
        reports, size = self.reports, self.watcher.store.size
        if reports.size() == size:
            return None
        return (f"watcher reports {reports} do not add up to its store's {size} objects "
                f"(initial_count {self.watcher.initial_count})")

    def watcher_versions(self) -> dict[str, str]:
        return {f"{r.namespace}/{r.name}": r.resource_version for r in self.watcher.store.refs()}


@pytest_asyncio.fixture
async def mirrors(env: EnvTest) -> AsyncIterator[Mirrors]:
    async with KubeClient(env.client_config) as admin:
        namespace = await create_namespace(admin, "faults")
    client = KubeClient(env.client_config)
    replay = Replay()
    informer = SharedInformer(ListWatch(client, CONFIGMAPS, namespace), name="informer")
    informer.add_event_handler(replay)
    reports = Reports()
    watcher = Watcher(
        WatcherConfig(
            gvr=CONFIGMAPS,
            namespace=namespace,
            index_by=["metadata.name"],
            debounce_interval=0.05,
            on_change=reports.on_change,
            on_sync_complete=reports.on_sync_complete,
        ),
        client,
    )
    try:
        yield Mirrors(informer, replay, watcher, reports, namespace)
    finally:
        await client.close()


async def server_versions(client: KubeClient, namespace: str) -> dict[str, str]:
    page = await client.list(CONFIGMAPS, namespace, ListOptions())
    return {keys.meta_namespace_key(o): o["metadata"]["resourceVersion"] for o in page.items}


def difference(name: str, got: dict[str, str], want: dict[str, str]) -> str:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    stale = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    return (f"{name}: {len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, "
            f"{len(stale)} stale {stale[:3]}")


async def until_converged(
    client: KubeClient,
    namespace: str,
    views: dict[str, Callable[[], dict[str, str] | Awaitable[dict[str, str]]]],
    extra: Callable[[], str | None] = lambda: None,
    within: float = CONVERGE_WITHIN,
) -> tuple[float, dict[str, str]]:
    """Poll until every view equals a fresh LIST (keys and versions); returns the seconds
    it took and that LIST."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        want = await server_versions(client, namespace)
        got = {}
        for name, view in views.items():
            value = view()
            got[name] = await value if isinstance(value, Awaitable) else value
        problem = extra()
        if all(g == want for g in got.values()) and problem is None:
            return loop.time() - start, want
        if loop.time() - start > within:
            raise AssertionError(
                f"no convergence within {within}s against {len(want)} objects: "
                + "; ".join(difference(n, g, want) for n, g in got.items())
                + f"; {problem or 'the extra condition holds'}"
            )
        await asyncio.sleep(0.05)


def assert_no_lost_delete(ledger: Ledger, namespace: str, want: dict[str, str],
                          mirrored: dict[str, dict[str, str]], replay: Replay | None) -> None:
    gone = {f"{namespace}/{name}" for name in ledger.deleted}
    assert gone, "the run acknowledged no delete: nothing was tested"
    assert not gone & set(want), "the real server lists objects whose DELETE it acknowledged"
    for name, versions in mirrored.items():
        assert not gone & set(versions), f"{name} still holds deleted objects"
    if replay is not None:
        unseen = {k for k in gone if k in replay.ever_added and k not in replay.delete_seen}
        assert not unseen, f"deletes never delivered to on_delete: {sorted(unseen)[:5]}"
    alive = {f"{namespace}/{name}" for name in ledger.live}
    assert alive <= set(want), "objects whose CREATE was acknowledged are missing"


async def run_fault(env: EnvTest, mirrors: Mirrors, fault: str) -> None:
    ns = mirrors.namespace
    ledger = Ledger()
    async with KubeClient(env.client_config, request_timeout=2.0) as writer, \
            KubeClient(env.client_config) as lister, mirrors.informer, mirrors.watcher:
        await seed_configmaps(writer, ns, ledger)
        assert await mirrors.informer.wait_for_sync(timeout=20)
        await asyncio.wait_for(mirrors.watcher.wait_for_sync(), 20)
        if fault == "kube-apiserver":
            kill, restart = env.kill_apiserver, env.arestart_apiserver
        else:
            kill, restart = env.kill_etcd, env.arestart_etcd
        outage = await write_through_crash(writer, ns, ledger, kill, restart)
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        took, want = await until_converged(
            lister, ns,
            {"informer": mirrors.informer_versions, "replay": lambda: mirrors.replay.state,
             "watcher": mirrors.watcher_versions},
            extra=mirrors.reports_problem,
        )
        since_restart = loop.time() - (outage.started + outage.seconds)
        assert mirrors.replay.problems == []
        assert_no_lost_delete(
            ledger, ns, want,
            {"informer": mirrors.informer_versions(), "watcher": mirrors.watcher_versions()},
            mirrors.replay,
        )
        stats = mirrors.informer.reflector.stats
        wstats = mirrors.watcher.reflector.stats
        print(
            f"\n[{fault} kill -9] {ledger.describe()}; {outage.describe(ledger)}; "
            f"converged {took:.2f} s after the writer stopped "
            f"({since_restart:.2f} s after the restart) on {len(want)} objects; "
            f"informer: {stats.lists} lists, {stats.relists} relists, {stats.watches} watches, "
            f"{stats.errors} errors, {mirrors.replay.tombstones} tombstones; "
            f"watcher: {wstats.lists} lists, {wstats.relists} relists, {wstats.errors} errors; "
            f"watcher reports +{mirrors.reports.created} ~{mirrors.reports.modified} "
            f"-{mirrors.reports.deleted}"
        )
        assert ledger.writes >= 500, "the load was too light to mean anything"
        assert stopped - outage.started > outage.seconds, "the writer outlived the outage"


async def test_kube_apiserver_killed_under_load(env: EnvTest, mirrors: Mirrors) -> None:
    await run_fault(env, mirrors, "kube-apiserver")


async def test_etcd_killed_under_load(env: EnvTest, mirrors: Mirrors) -> None:
    await run_fault(env, mirrors, "etcd")


# -- kubemirror serve across a kube-apiserver restart ------------------------------------------


async def served_versions(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """The mirror's objects, keyed like the member's, with the member's resourceVersion."""
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return {
        keys.meta_namespace_key(o): parse_memory_resource_version(
            o["metadata"]["resourceVersion"])[2]
        for o in body["items"]
    }


def feed_metrics(text: str) -> dict[str, float]:
    """The serve feed's counters (``kubemirror_<name>_total``) for real/configmaps.v1."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(
            r'kubemirror_(\w+)_total\{cluster="real",resource="configmaps\.v1"\} (\S+)', line)
        if match:
            found[match[1]] = float(match[2])
    assert {"errors", "lists", "relists", "watch_events"} <= set(found), text
    return found


async def test_serve_converges_after_kube_apiserver_restart(env: EnvTest, tmp_path: Path) -> None:
    async with KubeClient(env.client_config) as admin:
        ns = await create_namespace(admin, "serve")
    proc = await asyncio.create_subprocess_exec(
        *cli_command("serve", "--cluster", "real=envtest", "--kubeconfig",
                     str(env.kubeconfig_path), "--resource", "configmaps", "--port", "0"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    running = Running(proc)
    ledger = Ledger()
    try:
        async with KubeClient(env.client_config, request_timeout=2.0) as writer, \
                KubeClient(env.client_config) as lister, aiohttp.ClientSession() as http:
            await seed_configmaps(writer, ns, ledger)
            header = await running.line_matching(lambda s: s.startswith("kubemirror serve: "))
            url = header.split()[2]
            await running.line_matching(lambda s: "ready: every cluster synced" in s)
            outage = await write_through_crash(writer, ns, ledger, env.kill_apiserver,
                                               env.arestart_apiserver, rate=100,
                                               after_writes=200)
            paths = {
                "aggregated": f"{url}/api/v1/namespaces/{ns}/configmaps",
                "cluster": f"{url}/clusters/real/api/v1/namespaces/{ns}/configmaps",
            }
            views: dict[str, Callable[[], Awaitable[dict[str, str]]]] = {
                name: functools.partial(served_versions, http, p) for name, p in paths.items()
            }
            took, want = await until_converged(lister, ns, dict(views))
            mirrored = {name: await view() for name, view in views.items()}
            assert_no_lost_delete(ledger, ns, want, mirrored, None)
            async with http.get(f"{url}/readyz") as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(f"{url}/metrics") as resp:
                feed = feed_metrics(await resp.text())
            assert feed["errors"] >= 1, f"the mirror did not notice the crash: {feed}"
            print(
                f"\n[kube-apiserver kill -9 under kubemirror serve] {ledger.describe()}; "
                f"{outage.describe(ledger)}; served mirror converged {took:.2f} s after "
                f"the writer stopped, on {len(want)} objects; its feed: {feed}"
            )
        proc.send_signal(signal.SIGTERM)
        result = await running.finish()
        assert result.returncode == 0, result.stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
