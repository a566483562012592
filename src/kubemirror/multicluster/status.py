"""Kubernetes ``Status`` objects and the ``ApiError``s that carry them (multicluster layer).

The storage and the HTTP server raise these so an error crosses the wire as the
``Status`` the API server would send (``reason``, ``code``, ``details``), and a
client decoding it with ``errors.api_error_from_status`` gets the same class back.
Pure functions, no state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from kubemirror import errors
from kubemirror.types import Status

__all__ = [
    "FieldError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "internal_error",
    "invalid",
    "invalid_fields",
    "make_status",
    "method_not_allowed",
    "not_found",
    "precondition_failed",
    "status_of",
    "success",
    "timeout",
    "too_large_resource_version",
    "unauthorized",
    "unsupported_media_type",
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
    if details is not None:
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


FieldErrorType = Literal["Invalid", "Required", "Forbidden", "NotSupported", "TooLong"]

_CAUSE_REASONS: dict[str, str] = {
    "Invalid": "FieldValueInvalid",
    "Required": "FieldValueRequired",
    "Forbidden": "FieldValueForbidden",
    "NotSupported": "FieldValueNotSupported",
    "TooLong": "FieldValueTooLong",
}

_NO_VALUE = object()


def _go_quote(value: Any) -> str:
    """A value as Go's ``%#v``-ish rendering in field errors: strings quoted, null, lists."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field error of a 422 Invalid answer, as Kubernetes' ``field.Error``.

    ``detail`` is the explanation; ``value`` the offending value (rendered in the
    message for ``Invalid`` and ``NotSupported``).
    """

    type: FieldErrorType
    field: str
    detail: str = ""
    value: Any = _NO_VALUE

    @property
    def message(self) -> str:
        """The cause message: ``Invalid value: "x": detail``, ``Required value``..."""
        if self.type == "Invalid":
            head = "Invalid value"
            if self.value is not _NO_VALUE:
                head += f": {_go_quote(self.value)}"
        elif self.type == "Required":
            head = "Required value"
        elif self.type == "Forbidden":
            head = "Forbidden"
        elif self.type == "NotSupported":
            head = "Unsupported value"
            if self.value is not _NO_VALUE:
                head += f": {_go_quote(self.value)}"
        else:
            head = "Too long"
        return f"{head}: {self.detail}" if self.detail else head

    def cause(self) -> dict[str, str]:
        """The ``details.causes`` entry."""
        return {"reason": _CAUSE_REASONS[self.type], "message": self.message, "field": self.field}


def invalid_fields(
    kind: str, name: str, field_errors: list[FieldError], group: str = ""
) -> errors.InvalidError:
    """422 Invalid with one cause per field error, worded as kube-apiserver does:
    ``Kind[.group] "name" is invalid: field: message`` (``[a, b]`` for several)."""
    qualified = f"{kind}.{group}" if group else kind
    parts = [f"{e.field}: {e.message}" for e in field_errors]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(kind, name, group)
    details["causes"] = [e.cause() for e in field_errors]
    return errors.InvalidError(
        make_status(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)
    )


def unsupported_media_type(message: str, details: dict[str, Any] | None = None) -> errors.ApiError:
    """415 UnsupportedMediaType: a body the server cannot decode."""
    status = make_status(415, "UnsupportedMediaType", message)
    if details is not None:
        status["details"] = details
    return errors.ApiError(status)


def internal_error() -> errors.ApiError:
    """500 InternalError without any detail (the cause is logged server-side only)."""
    return errors.ApiError(
        make_status(
            500,
            "InternalError",
            "Internal error occurred: an unexpected error occurred; see the server log",
            {"causes": [{"message": "an unexpected error occurred; see the server log"}]},
        )
    )


def precondition_failed(
    kind: str, name: str, message: str, group: str = ""
) -> errors.ConflictError:
    """409 Conflict of a failed DeleteOptions precondition (worded with the Kind)."""
    qualified = f"{kind}.{group}" if group else kind
    return errors.ConflictError(
        make_status(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified} "{name}": {message}',
            _details(kind, name, group),
        )
    )


def too_large_resource_version(rv: str, current: str) -> errors.ApiError:
    """504 Timeout for a resourceVersion the storage has not reached (after waiting)."""
    return errors.ApiError(
        make_status(
            504,
            "Timeout",
            f"Timeout: Too large resource version: {rv}, current: {current}",
            {
                "causes": [
                    {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                ],
                "retryAfterSeconds": 1,
            },
        )
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
    meta = exc.status.get("metadata")
    if isinstance(meta, dict) and meta.get("continue"):
        status["metadata"] = {"continue": str(meta["continue"])}  # a 410's fresh list token
    return status
