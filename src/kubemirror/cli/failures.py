"""Turning exceptions into the one line a command prints: what went wrong, and the fix.

Part of the ``cli`` layer. ``explain`` maps kubemirror's errors (and the OS
errors a command can meet: a busy port, a missing file) to a ``CommandError``
with a hint; anything it does not know is a bug and keeps its traceback.
Secrets never reach the message: errors carry URLs, names and expressions only.
"""

from __future__ import annotations

import errno
import os
import ssl

import aiohttp

from kubemirror import errors

__all__ = ["cause_text", "explain", "one_line", "root_cause"]

_SELECTOR_HINT = (
    "Write selectors as key=value, key!=value, key in (a,b), key notin (a,b), key or !key, "
    "separated by commas"
)
_PATH_HINT = (
    "Write field paths like metadata.namespace, metadata.labels['app'] or spec.rules[0].host"
)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) collapsed to one space."""
    return " ".join(text.split())


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of the ``__cause__``/``__context__`` chain."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__cause__ or exc.__context__
        os_error = getattr(exc, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_error, OSError) and os_error is not exc:
            inner = os_error
        if inner is None:
            break
        exc = inner
    return exc


def _cause_text(exc: BaseException) -> str:
    cause = root_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed ({cause.verify_message})"
    if isinstance(cause, ssl.SSLError):
        return f"TLS error ({cause.reason or cause})"
    if isinstance(cause, OSError) and (cause.errno or cause.strerror):
        return os.strerror(cause.errno) if cause.errno else str(cause.strerror)
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, aiohttp.ClientPayloadError | aiohttp.http_exceptions.HttpProcessingError):
        return "the connection was lost in the middle of a response"
    text = str(cause) or type(cause).__name__
    return text.splitlines()[0]


def cause_text(exc: BaseException) -> str:
    """The innermost cause of ``exc`` in a few words (``Connection refused``, ``timed out``)."""
    return one_line(_cause_text(exc))


def _config_error(exc: errors.ConfigError) -> errors.CommandError:
    expression = f" {exc.expression!r}" if exc.expression is not None else ""
    where = f" at position {exc.position}" if exc.position is not None else ""
    field = exc.field or ""
    if isinstance(exc, errors.SelectorError):
        return errors.CommandError(
            f"invalid selector{expression}: {exc.message}{where}", _SELECTOR_HINT
        )
    if isinstance(exc, errors.FieldPathError):
        return errors.CommandError(
            f"invalid field path{expression} ({field}): {exc.message}{where}", _PATH_HINT
        )
    if field == "kubeconfig":
        return errors.CommandError(
            f"cannot load the kubeconfig{expression}: {exc.message}",
            "Pass --kubeconfig PATH or set KUBECONFIG to a valid kubeconfig file",
        )
    if field == "context":
        return errors.CommandError(
            f"kubeconfig context{expression}: {exc.message}",
            "List contexts with `kubectl config get-contexts` and pass --context NAME",
        )
    if field.startswith("users") or field in ("certificate-authority", "client-certificate"):
        return errors.CommandError(
            f"cannot use the kubeconfig credentials ({field}): {exc.message}",
            "Check the user entry of the context (kubectl config view --minify)",
        )
    label = f"{field}: " if field else ""
    return errors.CommandError(f"{label}{exc.message}{expression}{where}")


def explain(exc: BaseException, *, server: str | None = None) -> errors.CommandError | None:
    """A ``CommandError`` describing ``exc`` with a fix, or ``None`` if ``exc`` is unexpected.

    ``server`` (a URL) makes connection errors name the cluster they could not reach.
    """
    at = f" at {server}" if server else ""
    if isinstance(exc, errors.CommandError):
        return exc
    if isinstance(exc, errors.ConfigError):
        return _config_error(exc)
    if isinstance(exc, errors.ResourceNotFoundError):
        return errors.CommandError(
            f"the cluster{at} has no resource type {exc.name!r}",
            "List them with `kubectl api-resources`; use a plural (pods), short name (deploy) "
            "or resource.group (deployments.apps)",
        )
    if isinstance(exc, errors.TransportError):
        if isinstance(root_cause(exc), ssl.SSLCertVerificationError):
            return errors.CommandError(
                f"cannot reach the cluster{at}: {_cause_text(exc)}",
                "Check that the kubeconfig's certificate-authority is the CA that signed "
                "the server's certificate, and that --context/--kubeconfig select this cluster",
            )
        return errors.CommandError(
            f"cannot reach the cluster{at}: {_cause_text(exc)}",
            "Check that it is running and that --context/--kubeconfig select it",
        )
    if isinstance(exc, errors.UnauthorizedError):
        if exc.code == 403:
            return errors.CommandError(
                f"the cluster{at} forbids it: {exc.status.get('message') or exc.reason}",
                "Ask for list and watch permission on the resource, or use another --context",
            )
        return errors.CommandError(
            f"the cluster{at} rejected the credentials (401 Unauthorized)",
            "Log in again to refresh them, or use another --context",
        )
    if isinstance(exc, errors.ApiError):
        message = exc.status.get("message") or exc.reason or "error"
        return errors.CommandError(f"the cluster{at} answered {exc.code}: {message}")
    if isinstance(exc, errors.KVStoreError):
        return errors.CommandError(
            f"kvstore error: {_cause_text(exc)}",
            "Check --etcd (e.g. http://127.0.0.1:2379) and that etcd is running",
        )
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return errors.CommandError(
                f"cannot listen: the address is already in use ({exc.strerror})",
                "Pick another --port (0 picks a free one) or stop what uses it",
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return errors.CommandError(
                f"cannot listen on that address ({exc.strerror})",
                "Pass a --host that belongs to this machine",
            )
        if exc.filename:
            return errors.CommandError(f"{exc.strerror or exc}: {exc.filename}")
        return errors.CommandError(_cause_text(exc))
    return None
