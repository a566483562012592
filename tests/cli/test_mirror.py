"""The measurements behind the screens: sync progress from real LIST pages, rates, percentiles."""

from __future__ import annotations

import pytest

from kubemirror import listwatch
from kubemirror.cli.mirror import LatencyWindow, ObservedListerWatcher, RateMeter, SyncProgress
from kubemirror.client import config as client_config
from kubemirror.client import transport
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.multicluster.storage import MemoryStorage
from kubemirror.testing import PODS, make_pod, seed
from kubemirror.types import WatchEvent


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_progress_follows_real_list_pages(
    kube_storage: MemoryStorage, kube_api_server: KubeApiServer
) -> None:
    """Over the project's API server: the total comes from remainingItemCount on page one."""
    seed(kube_storage, [make_pod(f"p-{i:03d}", f"ns-{i % 3}") for i in range(250)])
    progress = SyncProgress()
    seen: list[WatchEvent] = []
    async with transport.KubeClient(
        client_config.ClientConfig.for_server(kube_api_server.url)
    ) as client:
        lw = ObservedListerWatcher(listwatch.ListWatch(client, PODS), progress, seen.append)
        page = await lw.list(listwatch.ListOptions(limit=100))
        assert (progress.listed, progress.total, progress.pages) == (100, 250, 1)
        assert not progress.done
        while page.continue_token:
            opts = listwatch.ListOptions(limit=100, continue_token=page.continue_token)
            page = await lw.list(opts)
        assert (progress.listed, progress.total, progress.pages) == (250, 250, 3)
        assert progress.done
        assert progress.seconds >= 0
        await lw.list(listwatch.ListOptions(limit=100))  # a relist is not recorded
        assert progress.pages == 3
        stream = await lw.watch(listwatch.ListOptions(resource_version=page.resource_version))
        seed(kube_storage, [make_pod("late", "ns-0")])
        event = await stream.__anext__()
        await stream.aclose()
    assert event["object"]["metadata"]["name"] == "late"
    assert seen == [event]


def test_progress_without_a_total_learns_it_at_the_end() -> None:
    progress = SyncProgress(clock=FakeClock())
    progress.start()
    progress.record_page(10, None, more=True)
    assert (progress.total, progress.listed) == (None, 10)
    progress.record_page(5, None, more=False)
    assert (progress.total, progress.done) == (15, True)


def test_rate_meter_uses_a_sliding_window() -> None:
    clock = FakeClock()
    meter = RateMeter(window=3.0, clock=clock)
    assert meter.sample(0) == 0.0
    for second in range(1, 11):
        clock.now += 1
        rate = meter.sample(100 * second)
    assert rate == pytest.approx(100.0)
    for _ in range(4):
        clock.now += 1
        rate = meter.sample(1000)
    assert rate == 0.0, "nothing happened during the whole window"


@pytest.mark.parametrize(
    ("p", "expected"), [(0, 1.0), (50, 51.0), (99, 100.0), (100, 100.0)], ids=str
)
def test_latency_percentiles(p: float, expected: float) -> None:
    window = LatencyWindow(size=100)
    for value in range(200, 0, -1):  # the window keeps the last 100: 100..1
        window.add(float(value if value <= 100 else 1000))
    assert window.count == 200
    assert window.percentile(p) == expected


def test_latency_empty() -> None:
    assert LatencyWindow().percentile(50) is None
