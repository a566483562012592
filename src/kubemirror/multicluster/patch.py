"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) for PATCH requests (multicluster layer).

Pure functions over decoded JSON: the target is never mutated, a new value is
returned (unchanged subtrees are shared). Strategic merge patches are applied
as merge patches, which is exact for maps and whole-list replacement.
A malformed JSON patch raises ``BadRequestError`` naming the operation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubemirror.multicluster import status

__all__ = ["apply_json_patch", "apply_merge_patch"]


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Return ``target`` with the RFC 7386 merge ``patch`` applied (``null`` deletes)."""
    if not isinstance(patch, Mapping):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise status.bad_request(f"invalid JSON pointer {path!r}: must start with '/'")
    return [_unescape(t) for t in path[1:].split("/")]


def _copy_container(node: Any) -> Any:
    if isinstance(node, Mapping):
        return dict(node)
    if isinstance(node, list):
        return list(node)
    return node


def _index(container: list[Any], token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise status.bad_request(f"invalid array index {token!r} in {path!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise status.bad_request(f"array index {index} out of range in {path!r}")
    return index


def _apply_op(doc: Any, tokens: list[str], op: str, value: Any, path: str) -> Any:
    """Apply one add/remove/replace at ``tokens`` under ``doc``, copying along the path."""
    if not tokens:
        if op == "remove":
            raise status.bad_request("cannot remove the whole document")
        return value
    node = _copy_container(doc)
    head, rest = tokens[0], tokens[1:]
    if isinstance(node, dict):
        if rest:
            if head not in node:
                raise status.bad_request(f"path {path!r} does not exist")
            node[head] = _apply_op(node[head], rest, op, value, path)
        elif op == "add":
            node[head] = value
        elif head not in node:
            raise status.bad_request(f"path {path!r} does not exist")
        elif op == "remove":
            del node[head]
        else:
            node[head] = value
        return node
    if isinstance(node, list):
        index = _index(node, head, path, allow_end=(op == "add" and not rest))
        if rest:
            node[index] = _apply_op(node[index], rest, op, value, path)
        elif op == "add":
            node.insert(index, value)
        elif op == "remove":
            del node[index]
        else:
            node[index] = value
        return node
    raise status.bad_request(f"path {path!r} goes through a scalar")


def _get(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise status.bad_request(f"path {path!r} does not exist")
    return node


def apply_json_patch(target: Any, operations: Any) -> Any:
    """Return ``target`` with the RFC 6902 ``operations`` applied (all or nothing).

    Supports ``add``, ``remove``, ``replace``, ``move``, ``copy`` and ``test``;
    raises ``BadRequestError`` for a malformed operation or a failed ``test``.
    """
    if not isinstance(operations, Sequence) or isinstance(operations, str | bytes):
        raise status.bad_request("a JSON patch must be a list of operations")
    doc = target
    for number, operation in enumerate(operations):
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise status.bad_request(f"JSON patch operation {number} needs 'op' and 'path'")
        op, path = operation["op"], str(operation["path"])
        tokens = _pointer(path)
        if op in ("add", "replace"):
            if "value" not in operation:
                raise status.bad_request(f"JSON patch operation {number} ({op}) needs 'value'")
            doc = _apply_op(doc, tokens, op, operation["value"], path)
        elif op == "remove":
            doc = _apply_op(doc, tokens, "remove", None, path)
        elif op in ("move", "copy"):
            source = str(operation.get("from", ""))
            value = _get(doc, _pointer(source), source)
            if op == "move":
                doc = _apply_op(doc, _pointer(source), "remove", None, source)
            doc = _apply_op(doc, tokens, "add", value, path)
        elif op == "test":
            if _get(doc, tokens, path) != operation.get("value"):
                raise status.bad_request(f"JSON patch test failed at {path!r}")
        else:
            raise status.bad_request(f"unknown JSON patch operation {op!r}")
    return doc
