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
        ("2024-01-02T23:50:00Z", "10m"),
        ("2024-01-02T20:00:00Z", "4h"),
        ("2024-01-01T00:00:00Z", "2d"),
        ("2024-01-04T00:00:00Z", "0s"),
        (None, "<unknown>"),
        ("garbage", "<unknown>"),
    ],
    ids=["seconds", "minutes", "hours", "days", "future", "missing", "garbage"],
)
def test_format_age(created: str | None, age: str) -> None:
    assert table.format_age(created, NOW) == age


def test_pod_table() -> None:
    pod = make_pod("web-0", phase="Pending")
    pod["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] = "east"
    tbl = table.to_table([pod], "Pod", resource_version="p.1", continue_token="c", now=NOW)
    assert [c["name"] for c in tbl["columnDefinitions"]] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
        "Cluster",
    ]
    assert tbl["metadata"] == {"resourceVersion": "p.1", "continue": "c"}
    [row] = tbl["rows"]
    assert row["cells"] == ["web-0", "2/2", "Pending", 0, "2d", "east"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "web-0"


def test_default_columns_and_include_object() -> None:
    obj = {"kind": "Lease", "metadata": {"name": "l", "creationTimestamp": "2024-01-02T23:00:00Z"}}
    tbl = table.to_table([obj], "Lease", include_object="Object", now=NOW)
    assert tbl["rows"][0]["cells"] == ["l", "60m", ""]
    assert tbl["rows"][0]["object"] is obj
    assert "object" not in table.table_row(obj, "Lease", NOW, include_object="None")
