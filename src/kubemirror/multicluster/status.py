"""Kubernetes ``Status`` objects and the ``ApiError``s that carry them (multicluster layer).

The storage and the HTTP server raise these so an error crosses the wire as the
``Status`` the API server would send (``reason``, ``code``, ``details``), and a
client decoding it with ``errors.api_error_from_status`` gets the same class back.
Pure functions, no state.
"""

from __future__ import annotations

from typing import Any

from kubemirror import errors
from kubemirror.types import Status

__all__ = [
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "invalid",
    "make_status",
    "method_not_allowed",
    "not_found",
    "status_of",
    "success",
    "timeout",
    "unauthorized",
]


def make_status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> Status:
    """Return a failure ``Status`` with the given HTTP ``code`` and ``reason``."""
    status: Status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = details
    return status


def success(details: dict[str, Any] | None = None) -> Status:
    """Return a ``Success`` status (DELETE of a collection, for example)."""
    status: Status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        status["details"] = details
    return status


def _details(kind: str | None, name: str | None, group: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if kind:
        out["kind"] = kind
    return out


def bad_request(message: str) -> errors.BadRequestError:
    """400 BadRequest: a malformed parameter, selector, body or resourceVersion."""
    return errors.BadRequestError(make_status(400, "BadRequest", message))


def unauthorized(message: str = "Unauthorized") -> errors.UnauthorizedError:
    """401 Unauthorized: missing or unknown bearer token."""
    return errors.UnauthorizedError(make_status(401, "Unauthorized", message))


def forbidden(message: str) -> errors.UnauthorizedError:
    """403 Forbidden: for example a write to a read-only server."""
    return errors.UnauthorizedError(make_status(403, "Forbidden", message))


def not_found(resource: str, name: str, group: str = "") -> errors.NotFoundError:
    """404 NotFound for ``resource`` ``name`` (``resource`` is the plural, as kubectl prints)."""
    qualified = f"{resource}.{group}" if group else resource
    message = (
        f'{qualified} "{name}" not found' if name else f"the server could not find {qualified}"
    )
    return errors.NotFoundError(
        make_status(404, "NotFound", message, _details(resource, name, group))
    )


def method_not_allowed(message: str) -> errors.ApiError:
    """405 MethodNotAllowed: a verb the resource does not support."""
    return errors.ApiError(make_status(405, "MethodNotAllowed", message))


def already_exists(resource: str, name: str, group: str = "") -> errors.ConflictError:
    """409 AlreadyExists for a create of an existing name."""
    qualified = f"{resource}.{group}" if group else resource
    return errors.ConflictError(
        make_status(
            409,
            "AlreadyExists",
            f'{qualified} "{name}" already exists',
            _details(resource, name, group),
        )
    )


def conflict(resource: str, name: str, message: str, group: str = "") -> errors.ConflictError:
    """409 Conflict: the write carried a stale ``metadata.resourceVersion``."""
    qualified = f"{resource}.{group}" if group else resource
    return errors.ConflictError(
        make_status(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified} "{name}": {message}',
            _details(resource, name, group),
        )
    )


def expired(message: str) -> errors.GoneError:
    """410 Expired: a resourceVersion or continue token this storage can no longer serve."""
    return errors.GoneError(make_status(410, "Expired", message))


def invalid(kind: str, name: str, field: str, message: str) -> errors.InvalidError:
    """422 Invalid: the object failed validation at ``field``."""
    details = _details(kind, name, None)
    details["causes"] = [{"reason": "FieldValueInvalid", "message": message, "field": field}]
    return errors.InvalidError(
        make_status(422, "Invalid", f'{kind} "{name}" is invalid: {field}: {message}', details)
    )


def timeout(message: str) -> errors.ApiError:
    """504 Timeout: for example a resourceVersion newer than anything the storage has seen."""
    return errors.ApiError(make_status(504, "Timeout", message))


def status_of(exc: errors.ApiError) -> Status:
    """The ``Status`` carried by ``exc``, completed with the standard envelope fields."""
    status = make_status(
        exc.code or 500,
        exc.reason or "InternalError",
        str(exc.status.get("message") or exc),
        exc.status.get("details"),
    )
    return status
