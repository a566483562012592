"""Request bodies decoded as kube-apiserver's decoder does, with its 400 messages.

Part of the served API (multicluster layer): JSON, or YAML for ``application/yaml``
and apply patches (converted to JSON values, bounded in size and depth), and
``DeleteOptions``. Every malformed body is a 400 ``BadRequest`` worded like the Go
decoder's (``couldn't get version/kind; json parse error: ...``); no exception text.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import orjson
import yaml
from aiohttp import web

from kubemirror.multicluster import request_info, status, validation

__all__ = [
    "JSON",
    "TYPE_META_STRUCT",
    "delete_options_problem",
    "json_problem",
    "json_value",
    "read_body",
    "read_delete_options",
    "unmarshal",
    "unrecognized",
]

JSON = "application/json"
_MAX_BODY_NODES = 1_000_000  # values in one decoded body (YAML aliases cannot expand past it)
_MAX_BODY_DEPTH = 200

TYPE_META_STRUCT = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)
"""The Go type the decoder names when a body is not an object."""


def unrecognized(kind: str) -> str:
    """The head of the 400 for a body that is not an object of ``kind``."""
    head = f"the object provided is unrecognized (must be of type {kind}): " if kind else ""
    return head + "couldn't get version/kind; json parse error: "


def json_problem(raw: bytes, pos: int) -> str:
    """A Go-style description of why ``raw`` is not JSON (``pos``: where it broke)."""
    text = raw.decode("utf-8", "replace")
    stripped = text.lstrip()
    if stripped and stripped[0] not in '{["-0123456789tfn':
        return f"invalid character {stripped[0]!r} looking for beginning of value"
    for literal in ("null", "true", "false"):
        if stripped[:1] == literal[0] and not stripped.startswith(literal):
            at = next((i for i, c in enumerate(stripped[: len(literal)]) if c != literal[i]), -1)
            if at < 0:
                return "unexpected end of JSON input"
            return (
                f"invalid character {stripped[at]!r} in literal {literal} "
                f"(expecting {literal[at]!r})"
            )
    if 0 <= pos < len(text):
        return f"invalid character {text[pos]!r} at offset {pos}"
    return "unexpected end of JSON input"


def json_value(value: Any, unrecognized: str) -> Any:
    """A decoded YAML value as JSON values (timestamps become strings, non-string keys
    their text); 400 for what JSON cannot hold, or a body that aliases expand too far."""
    budget = [_MAX_BODY_NODES]

    def convert(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_BODY_DEPTH:
            raise status.bad_request(unrecognized + "the body is too large or too deeply nested")
        if node is None or isinstance(node, str | bool):
            return node
        if isinstance(node, int):
            if not -(2**63) <= node < 2**64:
                raise status.bad_request(unrecognized + "a number is out of range")
            return node
        if isinstance(node, float):
            if node != node or node in (float("inf"), float("-inf")):
                raise status.bad_request(unrecognized + "a number is not finite")
            return node
        if isinstance(node, datetime.datetime | datetime.date):
            return node.isoformat().replace("+00:00", "Z")
        if isinstance(node, list):
            return [convert(item, depth + 1) for item in node]
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, item in node.items():
                if isinstance(key, bool):
                    key = "true" if key else "false"
                elif key is None:
                    key = "null"
                elif isinstance(key, int | float):
                    key = str(key)
                elif not isinstance(key, str):
                    raise status.bad_request(unrecognized + "a map key is not a string")
                out[key] = convert(item, depth + 1)
            return out
        raise status.bad_request(
            unrecognized + f"a YAML value of type {type(node).__name__} has no JSON form"
        )

    return convert(value, 0)


def unmarshal(value: Any, struct_field: str, go_type: str) -> str:
    return (
        f"json: cannot unmarshal {validation.go_json_type(value)} into Go struct field "
        f"{struct_field} of type {go_type}"
    )



def delete_options_problem(options: Mapping[str, Any]) -> str | None:
    """What the typed decoder says about DeleteOptions, or None."""
    pre = options.get("preconditions")
    if pre is not None:
        if not isinstance(pre, Mapping):
            return unmarshal(pre, "DeleteOptions.preconditions", "v1.Preconditions")
        for field, go_type in (("uid", "types.UID"), ("resourceVersion", "string")):
            value = pre.get(field)
            if value is not None and not isinstance(value, str):
                return unmarshal(value, f"Preconditions.preconditions.{field}", go_type)
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        return unmarshal(grace, "DeleteOptions.gracePeriodSeconds", "int64")
    policy = options.get("propagationPolicy")
    if policy is not None and not isinstance(policy, str):
        return unmarshal(policy, "DeleteOptions.propagationPolicy", "v1.DeletionPropagation")
    orphan = options.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        return unmarshal(orphan, "DeleteOptions.orphanDependents", "bool")
    dry_run = options.get("dryRun")
    if dry_run is not None:
        if not isinstance(dry_run, list):
            return unmarshal(dry_run, "DeleteOptions.dryRun", "[]string")
        for item in dry_run:
            if not isinstance(item, str):
                return unmarshal(item, "DeleteOptions.dryRun", "string")
    return None


async def read_body(request: web.Request, kind: str = "") -> Any:
    """The decoded body of a write: JSON, or YAML for ``application/yaml`` and apply
    patches (converted to JSON values). A malformed body is a 400 BadRequest worded
    as kube-apiserver's (``couldn't get version/kind; json parse error: ...``)."""
    media = request_info.media_type(request.headers.get("Content-Type")) or JSON
    raw = await request.read()
    head = unrecognized(kind)
    if media in ("application/yaml", "application/apply-patch+yaml"):
        try:
            decoded = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
            raise status.bad_request(
                head + "error converting YAML to JSON: the body is not valid YAML"
            ) from None
        return json_value(decoded, head)
    if not raw.strip():
        raise status.bad_request(head + "unexpected end of JSON input")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise status.bad_request(head + json_problem(raw, exc.pos)) from None


async def read_delete_options(request: web.Request) -> Mapping[str, Any]:
    """The request's DeleteOptions (``{}`` without a body); 400 for what the API
    server's decoder rejects."""
    if not request.body_exists:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    options = await read_body(request)
    if not isinstance(options, Mapping):
        raise status.bad_request(
            "couldn't get version/kind; json parse error: json: cannot unmarshal "
            f"{validation.go_json_type(options)} into Go value of type {TYPE_META_STRUCT}"
        )
    problem = delete_options_problem(options)
    if problem is not None:
        raise status.bad_request(problem)
    return options
