"""Every error a command can meet becomes one line saying what went wrong and how to fix it."""

from __future__ import annotations

import errno

import aiohttp
import pytest

from kubemirror import errors
from kubemirror.cli import failures


def _transport_error() -> errors.TransportError:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)")
    try:
        try:
            raise refused
        except OSError as exc:
            raise aiohttp.ClientOSError(errno.ECONNREFUSED, "connect failed") from exc
    except aiohttp.ClientError as exc:
        try:
            raise errors.TransportError(f"GET http://127.0.0.1:1/api: {exc!r}") from exc
        except errors.TransportError as outer:
            return outer
    raise AssertionError("unreachable")


CASES = [
    (
        errors.ResourceNotFoundError("podz"),
        "has no resource type 'podz'",
        "kubectl api-resources",
    ),
    (
        errors.SelectorError("found '(', expected a label value", expression="a=(", position=2),
        "invalid selector 'a=(': found '(', expected a label value at position 2",
        "key=value",
    ),
    (
        errors.FieldPathError("unbalanced '['", field="--index-by[0]", expression="a["),
        "invalid field path 'a[' (--index-by[0])",
        "metadata.labels['app']",
    ),
    (
        errors.ConfigError("no kubeconfig file found", field="kubeconfig", expression="/x"),
        "cannot load the kubeconfig '/x'",
        "--kubeconfig PATH",
    ),
    (
        errors.ConfigError("context not found (known: a)", field="context", expression="b"),
        "kubeconfig context 'b': context not found",
        "--context NAME",
    ),
    (
        _transport_error(),
        "cannot reach the cluster at https://k:6443: Connection refused",
        "running",
    ),
    (
        errors.UnauthorizedError({"code": 401, "reason": "Unauthorized"}),
        "rejected the credentials (401 Unauthorized)",
        "Log in again",
    ),
    (
        errors.UnauthorizedError({"code": 403, "reason": "Forbidden", "message": "no list"}),
        "forbids it: no list",
        "list and watch permission",
    ),
    (
        errors.BadRequestError({"code": 400, "message": "unable to parse requirement"}),
        "answered 400: unable to parse requirement",
        "",
    ),
    (
        OSError(errno.EADDRINUSE, "Address already in use"),
        "the address is already in use",
        "--port",
    ),
    (errors.CommandError("as is", "fix it"), "as is", "fix it"),
]


@pytest.mark.parametrize(
    ("exc", "message", "hint"),
    CASES,
    ids=[f"{type(case[0]).__name__}-{i}" for i, case in enumerate(CASES)],
)
def test_explain(exc: BaseException, message: str, hint: str) -> None:
    explained = failures.explain(exc, server="https://k:6443")
    assert explained is not None
    assert message in explained.message
    assert hint in explained.hint
    assert "\n" not in failures.one_line(str(explained))


def test_unknown_errors_are_not_explained() -> None:
    """A bug keeps its traceback (the command reports it as unexpected)."""
    assert failures.explain(ZeroDivisionError()) is None


def test_root_cause_follows_aiohttp_and_chains() -> None:
    cause = failures.root_cause(_transport_error())
    assert isinstance(cause, ConnectionRefusedError)


def test_one_line() -> None:
    assert failures.one_line("a\n  b\tc ") == "a b c"
