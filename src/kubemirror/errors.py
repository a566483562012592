"""Every exception kubemirror raises, under one base class.

Each error carries its culprit (the object, field, expression or HTTP status) as
attributes, so callers can act on it without parsing the message::

    KubemirrorError
    ├── ConfigError(field, expression, position)      also a ValueError
    │   ├── SelectorError                             malformed label/field selector
    │   └── FieldPathError                            malformed IndexBy/IgnoreFields path
    ├── CommandError(message, hint)                   a CLI command cannot run as asked
    ├── KeyFuncError(obj, reason)                     an object has no usable key
    ├── IndexFuncError(index_name, obj, reason)       an index function failed on an object
    ├── UnknownIndexError(index_name)                 no index of that name (also a LookupError)
    ├── StoreError(keys, reason)                      multi-key store misuse
    ├── MutationError(key, path)                      a stored (shared) object was mutated
    │   └── FetchError(namespace, name, keys, cause)  CachedStore could not fetch an object
    ├── FIFOClosedError                               pop on a closed queue
    ├── Requeue                                       raised by a pop callback to put deltas back
    ├── TransportError                                connection, TLS, timeout (wraps the cause)
    ├── MalformedEventError(line, reason)             a watch line that is not a valid event
    ├── MalformedValueError(key, revision, reason)    a kvstore value a watcher cannot decode
    ├── ResourceNotFoundError(name)                   discovery knows no such resource
    ├── ApiError(status)                              the API server answered with a Status
    │   ├── BadRequestError                           400
    │   ├── UnauthorizedError                         401/403
    │   ├── NotFoundError                             404
    │   ├── ConflictError                             409 (stale resourceVersion, already exists)
    │   ├── GoneError                                 410 (expired resourceVersion/continue)
    │   └── InvalidError                              422
    └── KVStoreError                                  kvstore backend failures
        ├── LeaseExpiredError                         a lease keys were attached to expired
        ├── KVStoreUnavailableError(operation, key)   unreachable; a write's outcome is unknown
        └── KVStoreStateError                         call not allowed in the component's state
            └── KVStoreClosedError                    use of a closed backend or store

Transport-level causes are chained with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ApiError",
    "BadRequestError",
    "CommandError",
    "ConfigError",
    "ConflictError",
    "FIFOClosedError",
    "FetchError",
    "FieldPathError",
    "GoneError",
    "IndexFuncError",
    "InvalidError",
    "KVStoreClosedError",
    "KVStoreError",
    "KVStoreStateError",
    "KVStoreUnavailableError",
    "KeyFuncError",
    "KubemirrorError",
    "LeaseExpiredError",
    "MalformedEventError",
    "MalformedValueError",
    "MutationError",
    "NotFoundError",
    "Requeue",
    "ResourceNotFoundError",
    "SelectorError",
    "StoreError",
    "TransportError",
    "UnauthorizedError",
    "UnknownIndexError",
    "api_error_from_status",
    "describe_object",
]


class KubemirrorError(Exception):
    """Base class of every exception raised by kubemirror."""


class ConfigError(KubemirrorError, ValueError):
    """Invalid user input: a configuration field, selector or field path.

    ``field`` names the setting (``"index_by[1]"``), ``expression`` quotes what the
    user wrote and ``position`` is the 0-based offset of the problem in it, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        expression: str | None = None,
        position: int | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.expression = expression
        self.position = position
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.field:
            parts.append(f"{self.field}: ")
        parts.append(self.message)
        if self.expression is not None:
            parts.append(f" in {self.expression!r}")
            if self.position is not None:
                parts.append(f" at position {self.position}")
                caret = " " * (self.position + 1) + "^"
                parts.append(f"\n  {self.expression!r}\n  {caret}")
        return "".join(parts)


class SelectorError(ConfigError):
    """A label or field selector that does not parse or validate."""


class FieldPathError(ConfigError):
    """A field path (``IndexBy``/``IgnoreFields`` expression) that does not compile."""


class CommandError(KubemirrorError):
    """A ``kubemirror`` command cannot do what it was asked.

    ``message`` says what went wrong, ``hint`` how to fix it (both one sentence);
    the command prints them on one line and exits non-zero.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}. {hint}" if hint else message)


class KeyFuncError(KubemirrorError):
    """A key function could not compute a key for ``obj``."""

    def __init__(self, obj: object, reason: str) -> None:
        self.obj = obj
        self.reason = reason
        super().__init__(f"cannot compute key for {describe_object(obj)}: {reason}")


class IndexFuncError(KubemirrorError):
    """The index function ``index_name`` failed on ``obj`` (raised or returned a non-list).

    The store that called it is left unchanged. ``reason`` describes the failure; the
    original exception, if any, is chained as ``__cause__``.
    """

    def __init__(self, index_name: str, obj: object, reason: str) -> None:
        self.index_name = index_name
        self.obj = obj
        self.reason = reason
        super().__init__(f"index {index_name!r} failed on {describe_object(obj)}: {reason}")


class UnknownIndexError(KubemirrorError, LookupError):
    """A lookup named an index that the store does not have."""

    def __init__(self, index_name: str, known: Sequence[str] = ()) -> None:
        self.index_name = index_name
        self.known = tuple(known)
        super().__init__(f"no index named {index_name!r} (known: {sorted(self.known)!r})")


class StoreError(KubemirrorError):
    """A multi-key store operation failed; ``keys`` are the keys involved."""

    def __init__(self, reason: str, keys: Sequence[str] = ()) -> None:
        self.reason = reason
        self.keys = tuple(keys)
        suffix = f" (keys {list(self.keys)!r})" if self.keys else ""
        super().__init__(f"{reason}{suffix}")


class MutationError(KubemirrorError):
    """An object a store shares with its readers was changed in place.

    ``key`` is the object's store key, ``path`` the first field found changed
    (``metadata.labels['tier']``; ``""`` for the object itself), ``where`` what
    noticed it (a handler's name, a read, the periodic check).
    """

    def __init__(self, key: str, path: str, where: str = "") -> None:
        self.key = key
        self.path = path
        self.where = where
        at = f" at {path}" if path else ""
        by = f" (found by {where})" if where else ""
        super().__init__(f"stored object {key!r} was mutated{at}{by}: shared objects are "
                         "read-only; copy before changing (copy=True, cache.deep_copy)")


class FetchError(StoreError):
    """A ``CachedStore`` fetch of ``namespace/name`` failed; ``cause`` is the error.

    Nothing is cached for the object, so the next read fetches again.
    """

    def __init__(
        self, namespace: str, name: str, keys: Sequence[str], cause: BaseException
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.cause = cause
        where = f"{namespace}/{name}" if namespace else name
        super().__init__(f"fetching {where} failed: {cause!r}", keys)


class FIFOClosedError(KubemirrorError):
    """The queue was closed while (or before) popping from it."""

    def __init__(self, message: str = "queue is closed") -> None:
        super().__init__(message)


class Requeue(KubemirrorError):
    """Raise from a ``pop`` callback to put the popped item back in the queue.

    ``cause`` is the error that made processing fail, if any.
    """

    def __init__(self, cause: BaseException | None = None) -> None:
        self.cause = cause
        super().__init__(f"requeue requested: {cause!r}" if cause else "requeue requested")


class TransportError(KubemirrorError):
    """The HTTP or gRPC connection failed (refused, reset, TLS, timeout)."""


class MalformedEventError(KubemirrorError):
    """A watch stream line that is not a valid watch event.

    ``line`` holds the first 200 bytes of the offending line and ``reason`` what is
    wrong with it. Watch consumers log and count it; they never crash on it.
    """

    def __init__(self, line: bytes | memoryview, reason: str) -> None:
        self.line = bytes(line[:200])
        self.reason = reason
        super().__init__(f"malformed watch event ({reason}): {self.line!r}")


class MalformedValueError(KubemirrorError):
    """A kvstore value a watcher's ``KVSource`` cannot turn into an object.

    ``key`` is the full key, ``revision`` the value's mod revision and ``reason``
    what is wrong (for JSON values, the decoder's message with its position).
    Watchers log and count it and keep the key's previous value; they never stop.
    """

    def __init__(self, key: str, revision: int, reason: str) -> None:
        self.key = key
        self.revision = revision
        self.reason = reason
        super().__init__(f"value of {key!r} at revision {revision} is not usable: {reason}")


class ResourceNotFoundError(KubemirrorError):
    """Discovery found no resource matching ``name`` (plural, singular, kind or short name)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"the server has no resource type {name!r}")


class ApiError(KubemirrorError):
    """The API server answered with an error ``Status``.

    ``status`` is the decoded ``Status`` object (or a synthesized one when the body
    was not a Status); ``code`` its HTTP code and ``reason`` its reason.
    """

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = dict(status)
        self.code = int(status.get("code") or 0)
        self.reason = str(status.get("reason") or "")
        message = str(status.get("message") or self.reason or "API error")
        super().__init__(f"{self.code} {self.reason}: {message}" if self.code else message)


class BadRequestError(ApiError):
    """400 Bad Request."""


class UnauthorizedError(ApiError):
    """401 Unauthorized or 403 Forbidden."""


class NotFoundError(ApiError):
    """404 Not Found."""


class ConflictError(ApiError):
    """409 Conflict: stale resourceVersion or the object already exists."""


class GoneError(ApiError):
    """410 Gone: the requested resourceVersion or continue token has expired."""


class InvalidError(ApiError):
    """422 Unprocessable Entity: the object failed validation."""


class KVStoreError(KubemirrorError):
    """A kvstore backend operation failed; the outcome of a write is unknown."""


class LeaseExpiredError(KVStoreError):
    """The lease a key was attached to has expired."""


class KVStoreUnavailableError(KVStoreError):
    """The kvstore could not be reached (connection refused or lost, timeout).

    ``operation`` is the backend call (``"update"``, ``"delete"``, ...) and ``key`` the
    key or prefix it was about. For a write the outcome is unknown: it may have been
    applied. kvstore writes are idempotent, so retrying the same write is safe.
    """

    def __init__(self, operation: str, key: str, cause: BaseException | None = None) -> None:
        self.operation = operation
        self.key = key
        self.cause = cause
        detail = f": {_cause_details(cause)}" if cause is not None else ""
        super().__init__(f"kvstore unavailable during {operation} of {key!r}{detail}")


def _cause_details(cause: BaseException) -> str:
    """A one-line description of ``cause`` (a gRPC error's ``details()``, else ``str``)."""
    details = getattr(cause, "details", None)
    text = str(details()) if callable(details) else str(cause)
    return " ".join(text.split())


class KVStoreStateError(KVStoreError):
    """A kvstore component was used in a state that does not allow the call.

    Examples: ``drain()`` while a watch runs, ``register()`` after ``run()`` started,
    starting a component twice.
    """


class KVStoreClosedError(KVStoreStateError):
    """The backend or store was already closed."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} is closed")


_API_ERRORS_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
}


def api_error_from_status(status: Mapping[str, Any]) -> ApiError:
    """Return the ``ApiError`` subclass instance matching ``status['code']``."""
    code = int(status.get("code") or 0)
    if code == 500 and status.get("reason") == "Expired":
        return GoneError(status)
    return _API_ERRORS_BY_CODE.get(code, ApiError)(status)


def describe_object(obj: object) -> str:
    """``obj`` named for a message: ``Pod ns/name``, ``Node name``, ``object without
    metadata``, or its type and a short repr; never raises."""
    if isinstance(obj, Mapping):
        meta = obj.get("metadata")
        kind = obj.get("kind", "object")
        if isinstance(meta, Mapping):
            return f"{kind} {meta.get('namespace') or ''}/{meta.get('name')!s}".replace(" /", " ")
        return f"{kind} without metadata"
    return f"{type(obj).__name__} {obj!r:.80}"
