"""Server-side printing: ages, columns and rows as kubectl expects them."""

from __future__ import annotations

import datetime

import pytest

from kubemirror.multicluster import table
from kubemirror.testing import make_pod

NOW = datetime.datetime(2024, 1, 3, 0, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("created", "age"),
    [
        ("2024-01-02T23:59:30Z", "30s"),
        ("2024-01-02T23:56:40Z", "3m20s"),
        ("2024-01-02T23:50:00Z", "10m"),
        ("2024-01-02T20:00:00Z", "4h"),
        ("2024-01-02T19:30:00Z", "4h30m"),
        ("2024-01-02T12:00:00Z", "12h"),
        ("2024-01-01T00:00:00Z", "2d"),
        ("2023-12-30T21:00:00Z", "3d3h"),
        ("2023-12-01T00:00:00Z", "33d"),
        ("2021-01-01T00:00:00Z", "3y2d"),
        ("2024-01-03T00:00:01Z", "0s"),
        ("2024-01-04T00:00:00Z", "<invalid>"),
        (None, "<unknown>"),
        ("garbage", "<unknown>"),
    ],
    ids=["seconds", "minutes-seconds", "minutes", "hours", "hours-minutes", "half-day",
         "days", "days-hours", "month", "years", "skew", "future", "missing", "garbage"],
)
def test_format_age(created: str | None, age: str) -> None:
    assert table.format_age(created, NOW) == age


def test_pod_table() -> None:
    pod = make_pod("web-0", phase="Pending")
    pod["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] = "east"
    tbl = table.to_table([pod], "Pod", resource_version="p.1", continue_token="c", now=NOW)
    columns = tbl["columnDefinitions"]
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in columns] == [
        ("Name", "string", "name", 0),
        ("Ready", "string", "", 0),
        ("Status", "string", "", 0),
        ("Restarts", "string", "", 0),
        ("Age", "string", "", 0),
        ("IP", "string", "", 1),
        ("Node", "string", "", 1),
        ("Nominated Node", "string", "", 1),
        ("Readiness Gates", "string", "", 1),
        ("Cluster", "string", "", 1),
    ]
    described = {c["name"]: c["description"] for c in tbl["columnDefinitions"]}
    assert described["Node"].startswith("NodeName indicates in which node this pod is scheduled")
    assert tbl["metadata"] == {"resourceVersion": "p.1", "continue": "c"}
    [row] = tbl["rows"]
    assert row["cells"] == [
        "web-0", "2/2", "Pending", "0", "2d", "10.0.0.1", "<none>", "<none>", "<none>", "east"
    ]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "web-0"


def test_default_columns_and_include_object() -> None:
    obj = {"kind": "Lease", "metadata": {"name": "l", "creationTimestamp": "2024-01-02T23:00:00Z"}}
    tbl = table.to_table([obj], "Lease", include_object="Object", now=NOW)
    assert tbl["rows"][0]["cells"] == ["l", "", "60m", ""]  # NAME HOLDER AGE CLUSTER
    assert tbl["rows"][0]["object"] is obj
    assert "object" not in table.table_row(obj, "Lease", NOW, include_object="None")
    widget = {"kind": "Widget", "metadata": {"name": "w", "creationTimestamp": obj["metadata"][
        "creationTimestamp"]}}
    plain = table.to_table([widget], "Widget", now=NOW)
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Age", "Cluster"]
    assert plain["rows"][0]["cells"] == ["w", "60m", ""]


def _status_pod(status: dict[str, object], **spec: object) -> dict[str, object]:
    return {
        "kind": "Pod",
        "metadata": {"name": "p", "creationTimestamp": "2024-01-02T00:00:00Z"},
        "spec": {"containers": [{"name": "a", "image": "i"}], **spec},
        "status": status,
    }


_TERMINATED_2M_AGO = {"terminated": {"exitCode": 1, "finishedAt": "2024-01-02T23:58:00Z"}}


@pytest.mark.parametrize(
    ("pod", "ready", "status", "restarts"),
    [
        (_status_pod({}), "0/1", "", "0"),
        (_status_pod({"phase": "Failed", "reason": "Evicted"}), "0/1", "Evicted", "0"),
        (
            _status_pod({"phase": "Running", "containerStatuses": [{
                "name": "a", "ready": False, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": _TERMINATED_2M_AGO}]}),
            "0/1", "CrashLoopBackOff", "3 (2m ago)",
        ),
        (
            _status_pod({"phase": "Running", "containerStatuses": [{
                "name": "a", "ready": True, "restartCount": 0, "state": {"running": {}}}]}),
            "1/1", "Running", "0",
        ),
        (
            _status_pod({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": True, "state": {"running": {}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ]}),
            "1/1", "NotReady", "0",
        ),
        (
            _status_pod(
                {"phase": "Pending", "initContainerStatuses": [
                    {"name": "init", "state": {"waiting": {"reason": "PodInitializing"}}}]},
                initContainers=[{"name": "init", "image": "i"}],
            ),
            "0/1", "Init:0/1", "0",
        ),
        (
            _status_pod(
                {"phase": "Pending", "initContainerStatuses": [
                    {"name": "init", "state": {"terminated": {"exitCode": 2}}}]},
                initContainers=[{"name": "init", "image": "i"}],
            ),
            "0/1", "Init:ExitCode:2", "0",
        ),
        (
            _status_pod(
                {"phase": "Running", "initContainerStatuses": [
                    {"name": "side", "started": True, "ready": True, "restartCount": 1,
                     "state": {"running": {}}, "lastState": _TERMINATED_2M_AGO}]},
                initContainers=[{"name": "side", "image": "i", "restartPolicy": "Always"}],
            ),
            "1/2", "Running", "1 (2m ago)",
        ),
        (
            _status_pod({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            "0/1", "SchedulingGated", "0",
        ),
    ],
    ids=["empty", "evicted", "crashloop", "running", "completed-sibling", "init-waiting",
         "init-failed", "sidecar", "gated"],
)
def test_pod_status_cells(pod: dict[str, object], ready: str, status: str, restarts: str) -> None:
    cells = table.table_row(pod, "Pod", NOW)["cells"]
    assert cells[1:4] == [ready, status, restarts]


def test_terminating_pod_and_wide_cells() -> None:
    pod = _status_pod(
        {"phase": "Running", "podIPs": [{"ip": "10.1.2.3"}], "nominatedNodeName": "n2",
         "conditions": [{"type": "gate-a", "status": "True"}]},
        nodeName="n1", readinessGates=[{"conditionType": "gate-a"}, {"conditionType": "gate-b"}],
    )
    pod["metadata"]["deletionTimestamp"] = "2024-01-02T23:00:00Z"  # type: ignore[index]
    assert table.table_row(pod, "Pod", NOW)["cells"][2:] == [
        "Terminating", "0", "24h", "10.1.2.3", "n1", "n2", "1/2", ""
    ]
