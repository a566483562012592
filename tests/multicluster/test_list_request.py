"""Tests for kubemirror.multicluster.list_request: a storage request's scope and checks."""

from __future__ import annotations

import pytest

from kubemirror import errors
from kubemirror.listing import ListOptions
from kubemirror.multicluster import resources
from kubemirror.multicluster.list_request import (
    ListScope,
    object_filter,
    validate_list_options,
)
from kubemirror.testing import PODS, make_pod

POD_INFO = next(info for info in resources.BUILTIN_RESOURCES if info.gvr == PODS)


@pytest.mark.parametrize(
    ("opts", "watch", "fields"),
    [
        (ListOptions(resource_version_match="Exact"), False, ["resourceVersionMatch"]),
        (
            ListOptions(resource_version="0", resource_version_match="Exact"),
            False,
            ["resourceVersionMatch"],
        ),
        (
            ListOptions(resource_version="p.1", resource_version_match="Sometimes"),
            False,
            ["resourceVersionMatch"],
        ),
        (ListOptions(send_initial_events=False), False, ["sendInitialEvents"]),
        (ListOptions(send_initial_events=True), True, ["resourceVersionMatch"]),
        (ListOptions(resource_version_match="NotOlderThan"), True, ["resourceVersionMatch"]),
        (
            ListOptions(resource_version_match="Exact", send_initial_events=True),
            True,
            ["resourceVersionMatch", "resourceVersionMatch"],
        ),
    ],
    ids=[
        "list-match-without-rv",
        "list-exact-zero",
        "list-unknown-match",
        "list-send-initial-events",
        "watch-send-without-match",
        "watch-match-without-send",
        "watch-exact",
    ],
)
def test_invalid_options_are_422_naming_each_field(
    opts: ListOptions, watch: bool, fields: list[str]
) -> None:
    with pytest.raises(errors.InvalidError) as invalid:
        validate_list_options(opts, watch=watch)
    assert invalid.value.code == 422
    causes = invalid.value.status["details"]["causes"]
    assert [cause["field"] for cause in causes] == fields


@pytest.mark.parametrize(
    ("opts", "watch"),
    [
        (ListOptions(), False),
        (ListOptions(resource_version="p.3", resource_version_match="Exact"), False),
        (ListOptions(resource_version="p.3", resource_version_match="NotOlderThan"), False),
        (ListOptions(send_initial_events=True, resource_version_match="NotOlderThan"), True),
        (ListOptions(send_initial_events=False, resource_version_match="NotOlderThan"), True),
        (ListOptions(resource_version="p.3"), True),
    ],
    ids=["list", "list-exact", "list-not-older", "watch-stream", "watch-no-replay", "watch-rv"],
)
def test_valid_options_pass(opts: ListOptions, watch: bool) -> None:
    validate_list_options(opts, watch=watch)


def test_object_filter_combines_the_scope_and_the_selectors() -> None:
    flt = object_filter(
        ListScope(clusters=("east",), namespace="web"),
        ListOptions(label_selector="app=a", field_selector="status.phase=Running"),
        POD_INFO,
    )
    pod = make_pod("p", "web", {"app": "a"}, phase="Running")
    assert flt.in_scope("east", "web")
    assert flt.matches_object(pod)
    assert not flt.in_scope("west", "web")
    assert not flt.in_scope("east", "db")
    assert not flt.matches_object(make_pod("p", "web", {"app": "b"}, phase="Running"))


def test_object_filter_refuses_a_field_the_type_does_not_select() -> None:
    with pytest.raises(errors.BadRequestError, match=r"spec\.bogus"):
        object_filter(ListScope(), ListOptions(field_selector="spec.bogus=x"), POD_INFO)
    object_filter(ListScope(), ListOptions(field_selector="spec.bogus=x"))  # no type: no check


@pytest.mark.parametrize(
    ("selector", "equality"),
    [
        ("", None),
        ("app=api", ("app", "api")),
        ("app==api", ("app", "api")),
        ("app in (api)", ("app", "api")),
        ("app in (api,web)", None),
        ("app!=api", None),
        ("tier,app=api", ("app", "api")),
        ("!tier,zone notin (a)", None),
    ],
    ids=["none", "equals", "double-equals", "one-value-in", "two-value-in", "not-equals",
         "after-exists", "no-equality"],
)
def test_the_label_equality_every_selected_object_carries(
    selector: str, equality: tuple[str, str] | None
) -> None:
    flt = object_filter(ListScope(), ListOptions(label_selector=selector), POD_INFO)
    assert flt.label_equality == equality
