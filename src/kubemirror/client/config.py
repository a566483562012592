"""Where the API server is and how to authenticate to it: kubeconfig, in-cluster, explicit.

Part of the ``client/`` layer. Parsing kubeconfig files (contexts, several files
merged from ``KUBECONFIG``), exec credential plugins, OIDC/GCP auth providers, token
files and in-cluster service-account credentials are delegated to
``kubernetes_asyncio.config``, a maintained asyncio-native library; this module
only turns its result into a ``ClientConfig``: a server URL, an ``ssl.SSLContext``
and an async source of ``Authorization`` headers. Secrets never appear in a
``repr`` or a log line.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from kubemirror import errors

__all__ = [
    "ClientConfig",
    "load_config",
    "load_incluster_config",
    "load_kube_config",
]

AuthSource = Callable[[], Awaitable[str | None]]
"""Returns the current ``Authorization`` header value (or ``None``); may refresh it."""

RefreshSource = Callable[[], Awaitable[bool]]
"""Forces new credentials (after a 401); returns True if they may have changed."""

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ClientConfig:
    """Connection settings for one API server.

    Immutable after construction and safe to share between tasks and threads; the
    ``ssl_context`` is built once. ``authorization()`` may run an exec plugin or
    re-read a rotated token file, so it is a coroutine. ``namespace`` is the
    context's default namespace (``"default"`` when unset); ``proxy`` the
    kubeconfig's ``proxy-url`` (an HTTP proxy), if any.
    """

    __slots__ = (
        "_auth",
        "_refresh",
        "context_name",
        "namespace",
        "proxy",
        "server",
        "ssl_context",
        "tls_server_name",
    )

    def __init__(
        self,
        server: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        auth: AuthSource | None = None,
        tls_server_name: str | None = None,
        namespace: str = "default",
        context_name: str | None = None,
        proxy: str | None = None,
        refresh: RefreshSource | None = None,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise errors.ConfigError(
                "server must be an http:// or https:// URL", field="server", expression=server
            )
        self.server = server.rstrip("/")
        self.ssl_context = ssl_context
        self.tls_server_name = tls_server_name
        self.namespace = namespace
        self.context_name = context_name
        self.proxy = proxy
        self._auth = auth
        self._refresh = refresh

    @classmethod
    def for_server(
        cls,
        server: str,
        *,
        token: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        ca_data: str | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        insecure_skip_tls_verify: bool = False,
        tls_server_name: str | None = None,
        namespace: str = "default",
    ) -> ClientConfig:
        """Settings given explicitly (a bearer ``token``, a custom CA, a client certificate)."""
        context = None
        if server.startswith("https://"):
            context = make_ssl_context(
                ca_file=ca_file,
                ca_data=ca_data,
                cert_file=cert_file,
                key_file=key_file,
                verify=not insecure_skip_tls_verify,
            )
        header = f"Bearer {token}" if token else None

        async def auth() -> str | None:
            return header

        return cls(
            server,
            ssl_context=context,
            auth=auth,
            tls_server_name=tls_server_name,
            namespace=namespace,
        )

    async def authorization(self) -> str | None:
        """The ``Authorization`` header to send now (refreshing credentials if due)."""
        if self._auth is None:
            return None
        return await self._auth()

    async def refresh_credentials(self) -> bool:
        """Get fresh credentials after the server rejected them (401): re-runs an exec
        plugin. Returns True if a retry may succeed."""
        if self._refresh is None:
            return False
        return await self._refresh()

    def __repr__(self) -> str:
        return (
            f"ClientConfig(server={self.server!r}, context={self.context_name!r}, "
            f"namespace={self.namespace!r}, tls={self.ssl_context is not None})"
        )


def make_ssl_context(
    *,
    ca_file: str | os.PathLike[str] | None = None,
    ca_data: str | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """An ``SSLContext`` trusting ``ca_file``/``ca_data`` (else the system CAs).

    Raises ``ConfigError`` naming the file that cannot be loaded.
    """
    try:
        context = ssl.create_default_context(
            cafile=os.fspath(ca_file) if ca_file else None, cadata=ca_data or None
        )
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(
            f"cannot load certificate authority: {exc}", field="certificate-authority"
        ) from exc
    if cert_file:
        try:
            context.load_cert_chain(os.fspath(cert_file), os.fspath(key_file) if key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigError(
                f"cannot load client certificate/key: {exc}", field="client-certificate"
            ) from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _kubeconfig_paths(config_file: str | os.PathLike[str] | None) -> list[str]:
    if config_file is not None:
        raw = os.fspath(config_file)
    else:
        raw = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    paths = [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]
    existing = [p for p in paths if os.path.exists(p)]
    if not existing:
        raise errors.ConfigError("no kubeconfig file found", field="kubeconfig", expression=raw)
    return existing


def _first_current_context(paths: list[str]) -> str | None:
    """kubectl's merge rule: the first file that sets ``current-context`` wins."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            raise errors.ConfigError(
                f"cannot read kubeconfig: {exc}", field="kubeconfig", expression=path
            ) from exc
        if isinstance(doc, Mapping) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


async def load_kube_config(
    config_file: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> ClientConfig:
    """Load settings from kubeconfig: ``config_file``, else ``$KUBECONFIG``, else the home one.

    ``config_file`` and ``$KUBECONFIG`` may list several files separated by
    ``os.pathsep``; they are merged as kubectl does (first definition of a name
    wins). ``context`` selects a context (default: ``current-context``). Exec
    plugins run now and again when their credential expires. Raises
    ``ConfigError`` naming the file or context at fault.
    """
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import kube_config
    from kubernetes_asyncio.config.config_exception import ConfigException

    paths = _kubeconfig_paths(config_file)
    context = context or _first_current_context(paths)
    merger = kube_config.KubeConfigMerger(os.pathsep.join(paths))
    merged = merger.config
    if merged is None:
        raise errors.ConfigError("empty kubeconfig", field="kubeconfig", expression=str(paths))
    names = [c.get("name") for c in _plain(merged.value.get("contexts"))]
    if context is None:
        raise errors.ConfigError(
            "kubeconfig sets no current-context and none was given",
            field="context",
            expression=os.pathsep.join(paths),
        )
    if context not in names:
        raise errors.ConfigError(
            f"context not found (known: {', '.join(map(str, names)) or 'none'})",
            field="context",
            expression=context,
        )
    configuration = Configuration()
    try:
        loader = kube_config.KubeConfigLoader(
            config_dict=merger.config, config_base_path=None, active_context=context
        )
        await loader.load_and_set(configuration)
    except (ConfigException, AssertionError, KeyError, TypeError, ValueError) as exc:
        raise errors.ConfigError(
            f"invalid kubeconfig: {exc}", field="kubeconfig", expression=context
        ) from exc

    async def run_exec_plugin() -> None:
        """Run the user's exec credential plugin (the loader caches until expiry) and
        take its token; raises ``ConfigError`` if the plugin fails."""
        try:
            await loader.load_from_exec_plugin()
        except ConfigException as exc:
            raise errors.ConfigError(
                f"exec credential plugin failed: {exc}", field="users.exec"
            ) from exc
        configuration.api_key["BearerToken"] = loader.token

    async def auth() -> str | None:
        if getattr(loader, "exec_plugin_expiry", None) is not None:
            await run_exec_plugin()
        value: str | None = configuration.api_key.get("BearerToken")
        return value

    async def refresh() -> bool:
        user: Any = (ctx_value.get("context") or {}).get("user")
        users = {u.get("name"): u.get("user") or {} for u in _plain(merged.value.get("users"))}
        if "exec" not in users.get(user, {}):
            return False
        if hasattr(loader, "exec_plugin_expiry"):
            del loader.exec_plugin_expiry  # forces the plugin to run again
        await run_exec_plugin()
        return True

    ctx_value: Any = loader.current_context or {}
    namespace = (ctx_value.get("context") or {}).get("namespace") or "default"
    return _from_configuration(
        configuration, auth, namespace=namespace, context_name=context, refresh=refresh
    )


def _plain(items: Any) -> list[dict[str, Any]]:
    """kubernetes_asyncio's merged lists hold ``ConfigNode``s or dicts; return dicts."""
    return [getattr(item, "value", item) for item in items or []]


def load_incluster_config(
    *,
    token_file: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR / "token",
    ca_file: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR / "ca.crt",
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Settings of a pod's service account (``KUBERNETES_SERVICE_HOST``/``_PORT``).

    The token file is re-read periodically, so rotated tokens are picked up.
    Raises ``ConfigError`` when not running in a cluster.
    """
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

    configuration = Configuration()
    try:
        InClusterConfigLoader(
            token_filename=os.fspath(token_file),
            cert_filename=os.fspath(ca_file),
            environ=dict(os.environ if environ is None else environ),
        ).load_and_set(configuration)
    except ConfigException as exc:
        raise errors.ConfigError(f"not in a cluster: {exc}", field="in-cluster") from exc

    async def auth() -> str | None:
        hook: Any = configuration.refresh_api_key_hook
        if hook is not None:
            hook(configuration)
        value: str | None = configuration.api_key.get("BearerToken")
        return value

    namespace = "default"
    ns_file = Path(os.fspath(token_file)).with_name("namespace")
    if ns_file.is_file():
        namespace = ns_file.read_text(encoding="utf-8").strip() or "default"
    return _from_configuration(configuration, auth, namespace=namespace, context_name=None)


async def load_config(
    config_file: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> ClientConfig:
    """Settings as kubectl finds them: ``config_file`` when given, else kubeconfig when one
    exists (``$KUBECONFIG`` or ``~/.kube/config``), else the pod's service account.

    ``context`` selects a kubeconfig context. Raises ``ConfigError`` naming the file
    or context at fault (also when ``config_file`` does not exist).
    """
    if config_file is not None:
        return await load_kube_config(config_file, context=context)
    raw = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if _any_exists(raw):
        return await load_kube_config(context=context)
    if context is not None:
        raise errors.ConfigError("no kubeconfig file found", field="kubeconfig", expression=raw)
    return load_incluster_config()


def _any_exists(paths: str) -> bool:
    return any(os.path.exists(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p)


def _from_configuration(
    configuration: Any,
    auth: AuthSource,
    *,
    namespace: str,
    context_name: str | None,
    refresh: RefreshSource | None = None,
) -> ClientConfig:
    host: str = configuration.host
    ssl_context = None
    if host.startswith("https://"):
        ssl_context = make_ssl_context(
            ca_file=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            verify=bool(configuration.verify_ssl),
        )
    return ClientConfig(
        host,
        ssl_context=ssl_context,
        auth=auth,
        tls_server_name=getattr(configuration, "tls_server_name", None),
        namespace=namespace,
        context_name=context_name,
        proxy=getattr(configuration, "proxy", None) or None,
        refresh=refresh,
    )
