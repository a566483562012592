"""Tests for kubemirror.listing: the LIST/WATCH vocabulary every layer shares."""

from __future__ import annotations

import dataclasses

import pytest

from kubemirror import client, listwatch, multicluster
from kubemirror.listing import ListOptions, ListPage


def test_list_options_query_for_list_and_watch() -> None:
    opts = ListOptions(label_selector="app=web", field_selector="spec.nodeName=n1", limit=500,
                       continue_token="abc", resource_version="10", timeout_seconds=30,
                       allow_watch_bookmarks=True, send_initial_events=True,
                       resource_version_match="NotOlderThan")
    assert opts.to_query() == {
        "labelSelector": "app=web", "fieldSelector": "spec.nodeName=n1", "limit": "500",
        "continue": "abc", "resourceVersion": "10", "resourceVersionMatch": "NotOlderThan",
        "timeoutSeconds": "30",
    }
    assert opts.to_query(watch=True) == {
        "watch": "true", "labelSelector": "app=web", "fieldSelector": "spec.nodeName=n1",
        "resourceVersion": "10", "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "30",
        "allowWatchBookmarks": "true", "sendInitialEvents": "true",
    }
    assert ListOptions().to_query() == {}


@pytest.mark.parametrize(
    ("send", "query"),
    [(None, {}), (True, {"sendInitialEvents": "true"}), (False, {"sendInitialEvents": "false"})],
    ids=["unset", "true", "false"],
)
def test_send_initial_events_is_sent_only_when_set_and_only_on_watch(
    send: bool | None, query: dict[str, str]
) -> None:
    opts = ListOptions(send_initial_events=send)
    assert opts.to_query(watch=True) == {"watch": "true", **query}
    assert opts.to_query() == {}


def test_list_options_are_immutable_values() -> None:
    opts = ListOptions(limit=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.limit = 6  # type: ignore[misc]
    assert dataclasses.replace(opts, continue_token="t") == ListOptions(limit=5, continue_token="t")


def test_a_page_defaults_to_a_last_page_without_a_count() -> None:
    page = ListPage([{"metadata": {"name": "a"}}], "7")
    assert (page.continue_token, page.remaining_item_count, page.kind) == ("", None, "")


def test_every_layer_exports_the_same_vocabulary() -> None:
    assert client.ListOptions is listwatch.ListOptions is multicluster.ListOptions is ListOptions
    assert client.ListPage is listwatch.ListPage is ListPage
