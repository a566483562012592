"""The ``kubemirror`` command line: typer commands, logging, and error reporting.

Part of the ``cli`` layer. Each command parses its options here and runs its
asyncio implementation (``demo``, ``watch``, ``serve``, ``kv`` modules, imported
when the command runs so ``--help`` stays fast). Errors are printed as one line
saying what went wrong and how to fix it, with exit code 1; ``--debug`` shows
the traceback and debug logs instead. Ctrl-C stops a running command cleanly.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kubemirror.cli import failures

if TYPE_CHECKING:
    from kubemirror.cli.kv import EtcdOptions

__all__ = ["OutputFormat", "app", "main"]

app = typer.Typer(
    name="kubemirror",
    help="Live, indexed, in-memory mirrors of Kubernetes resources and etcd key spaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold tokens
    rich_markup_mode="rich",
)
kv_app = typer.Typer(
    help="Inspect and watch a kvstore prefix (etcd with --etcd, else an embedded demo keyspace).",
    no_args_is_help=True,
)
app.add_typer(kv_app, name="kv")
envtest_app = typer.Typer(
    help="A real kube-apiserver and etcd on loopback, for testing (controller-runtime's envtest).",
    no_args_is_help=True,
)
app.add_typer(envtest_app, name="envtest")


class OutputFormat(enum.StrEnum):
    """How ``watch`` and ``kv watch`` print: a live screen / text lines, or JSON lines."""

    TEXT = "text"
    JSON = "json"


@dataclass(slots=True)
class _Globals:
    debug: bool = False
    verbose: bool = False


Debug = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks and debug logs.", envvar="KUBEMIRROR_DEBUG"),
]
Kubeconfig = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context to use.")]
Duration = Annotated[
    float | None,
    typer.Option("--duration", min=0.0, help="Exit (status 0) after this many seconds."),
]
Etcd = Annotated[
    str | None,
    typer.Option(
        "--etcd",
        envvar="KUBEMIRROR_ETCD_URL",
        help="etcd endpoints, comma-separated (https://10.0.0.1:2379,https://10.0.0.2:2379). "
        "Without it (and --etcd-config): an embedded demo keyspace.",
    ),
]
EtcdConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--etcd-config",
        envvar="KUBEMIRROR_ETCD_CONFIG",
        help="etcd client config file in Cilium's format (endpoints:, trusted-ca-file:, "
        "cert-file:, key-file:).",
    ),
]
CaCert = Annotated[
    Path | None, typer.Option("--cacert", help="CA bundle verifying the etcd members (TLS).")
]
Cert = Annotated[Path | None, typer.Option("--cert", help="Client certificate (TLS).")]
Key = Annotated[Path | None, typer.Option("--key", help="Client certificate's key (TLS).")]
User = Annotated[
    str | None, typer.Option("--user", help="etcd user: USER or USER:PASSWORD.")
]
Password = Annotated[
    str | None,
    typer.Option("--password", envvar="KUBEMIRROR_ETCD_PASSWORD", help="Password for --user."),
]
Prefix = Annotated[str, typer.Argument(help='Key prefix ("" for every key).')]
Output = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="text (live screen on a terminal) or json lines."),
]


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Debug = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Live, indexed, in-memory mirrors of Kubernetes resources and etcd key spaces.

    Start with [bold]kubemirror demo[/]: no cluster needed.
    """
    ctx.obj = _Globals(debug=debug, verbose=verbose)


def _globals(ctx: typer.Context) -> _Globals:
    node: typer.Context | None = ctx
    while node is not None:
        if isinstance(node.obj, _Globals):
            return node.obj
        node = node.parent  # type: ignore[assignment]
    return _Globals()


def _setup_logging(debug: bool, verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(
        console=Console(stderr=True), show_path=debug, rich_tracebacks=debug, markup=False
    )
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    if not debug:
        for noisy in ("aiohttp.access", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _run(
    ctx: typer.Context, debug: bool, body: Callable[[], Coroutine[Any, Any, int | None]]
) -> None:
    """Run ``body`` on a new event loop; report errors as one line (or raise with --debug)."""
    options = _globals(ctx)
    debug = debug or options.debug
    _setup_logging(debug, options.verbose)
    try:
        code = asyncio.run(body(), debug=False)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        explained = failures.explain(exc)
        if explained is None:
            message = (
                f"unexpected {type(exc).__name__}: {exc}. This is a bug: run again with "
                "--debug for the traceback and report it."
            )
        else:
            message = str(explained)
        typer.echo(f"error: {failures.one_line(message)}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code or 0)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


# -- demo -----------------------------------------------------------------------------------


@app.command()
def demo(
    ctx: typer.Context,
    pods: Annotated[int, typer.Option("--pods", min=0, help="Pods in the workload.")] = 5000,
    churn: Annotated[
        float, typer.Option("--churn", min=0.0, help="Object writes per second (churn).")
    ] = 100.0,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="API server port (0: any free one).")
    ] = 0,
    duration: Duration = None,
    seed: Annotated[int, typer.Option("--seed", help="Workload random seed.")] = 0,
    write_kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--write-kubeconfig",
            help="Write a kubeconfig for the embedded server here once it is populated "
            "(removed on exit).",
        ),
    ] = None,
    debug: Debug = False,
) -> None:
    """Mirror a generated cluster live: no cluster or configuration needed.

    Starts an embedded Kubernetes-compatible API server with thousands of pods
    that keep changing, mirrors them with an indexed Watcher, and shows the
    initial sync, then change counts, store size, events/s and latency.
    Point kubectl at it with the command it prints. Ctrl-C exits; on exit the
    mirror is checked against the server (exit status 1 if they differ).
    """
    from kubemirror.cli import demo as demo_mod

    options = demo_mod.DemoOptions(
        pods=pods,
        churn=churn,
        port=port,
        duration=duration,
        seed=seed,
        write_kubeconfig=write_kubeconfig.expanduser() if write_kubeconfig else None,
    )

    async def body() -> int:
        report = await demo_mod.run_demo(options, _console())
        return 0 if report.matches else 1

    _run(ctx, debug, body)


# -- watch ----------------------------------------------------------------------------------


@app.command()
def watch(
    ctx: typer.Context,
    resource: Annotated[
        str, typer.Argument(help="What to mirror: pods, deploy, deployments.apps, a CRD plural…")
    ],
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace (default: the context's)."),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Mirror every namespace.")
    ] = False,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label selector (app=web,tier!=db).")
    ] = None,
    field_selector: Annotated[
        str | None, typer.Option("--field-selector", help="Field selector (spec.nodeName=n1).")
    ] = None,
    index_by: Annotated[
        list[str] | None,
        typer.Option(
            "--index-by",
            help="Field path to index by (repeat for a composite key). "
            "Default: metadata.namespace.",
        ),
    ] = None,
    ignore_field: Annotated[
        list[str] | None,
        typer.Option("--ignore-field", help="Field path dropped before storing (repeatable)."),
    ] = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="API server URL to use instead of a kubeconfig, without credentials "
            "(e.g. the demo's).",
        ),
    ] = None,
    output: Output = OutputFormat.TEXT,
    debounce: Annotated[
        float, typer.Option("--debounce", min=0.0, help="Seconds between change reports.")
    ] = 1.0,
    check_drift: Annotated[
        float,
        typer.Option("--check-drift", min=0.0, metavar="SECONDS",
                     help="Compare the mirror with a LIST from the server every SECONDS and "
                     "report drift (0: never)."),
    ] = 0.0,
    repair_drift: Annotated[
        bool, typer.Option("--repair-drift", help="Relist when --check-drift finds drift.")
    ] = False,
    duration: Duration = None,
    debug: Debug = False,
) -> None:
    """Mirror a resource of a real cluster (from kubeconfig) and report its changes.

    Shows progress during the initial sync, then debounced change stats;
    [bold]-o json[/] prints one JSON object per line for scripts.
    """
    from kubemirror.cli import watch as watch_mod

    options = watch_mod.WatchOptions(
        resource=resource,
        namespace=namespace,
        all_namespaces=all_namespaces,
        label_selector=selector or "",
        field_selector=field_selector or "",
        index_by=tuple(index_by or ()),
        ignore_fields=tuple(ignore_field or ()),
        context=context,
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        server=server,
        json=output is OutputFormat.JSON,
        debounce=debounce,
        duration=duration,
        check_drift=check_drift,
        repair_drift=repair_drift,
    )
    _run(ctx, debug, lambda: watch_mod.run_watch(options, _console()))


# -- serve ----------------------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (flags override it).")
    ] = None,
    cluster: Annotated[
        list[str] | None,
        typer.Option("--cluster", help="NAME=CONTEXT of a member cluster (repeatable)."),
    ] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option("--resource", "-r", help="Resources to mirror: pods,deployments.apps"),
    ] = None,
    kubeconfig: Kubeconfig = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Listen address (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Listen port (default 6443).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(
            "--token", envvar="KUBEMIRROR_TOKEN", help="Accepted bearer token (repeatable)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File of accepted tokens, one a line.")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Allow a non-loopback address without TLS and tokens."
        ),
    ] = False,
    read_only: Annotated[
        bool | None,
        typer.Option("--read-only/--read-write", help="Reject writes (default: read-only)."),
    ] = None,
    metrics: Annotated[
        bool | None,
        typer.Option("--metrics/--no-metrics", help="Serve /metrics (needs kubemirror[metrics])."),
    ] = None,
    write_kubeconfig: Annotated[
        Path | None,
        typer.Option("--write-kubeconfig", help="Write a kubeconfig for this server here."),
    ] = None,
    unready_after: Annotated[
        float | None,
        typer.Option(
            "--unready-after",
            min=0.001,
            help="Seconds a member may be unreachable before /readyz answers 503 (default 60).",
        ),
    ] = None,
    accept_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--accept-hosts",
            help="Regular expression of an extra accepted Host header (repeatable; "
            "default: loopback names and the listen address only, as kubectl proxy).",
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            help="Browser Origin allowed to call the API (scheme://host[:port], repeatable).",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Where the mirrored objects live: memory (default) or a PostgreSQL URL "
            "(postgresql://user@host/db) shared by several serve replicas.",
        ),
    ] = None,
    check_drift: Annotated[
        float | None,
        typer.Option("--check-drift", min=0.0, metavar="SECONDS",
                     help="Compare each (cluster, resource) with a LIST of the member every "
                     "SECONDS; drift shows in /metrics and the log (default 0: never)."),
    ] = None,
    repair_drift: Annotated[
        bool | None,
        typer.Option("--repair-drift/--no-repair-drift",
                     help="Relist a (cluster, resource) where --check-drift found drift."),
    ] = None,
    freeze_gc: Annotated[
        bool | None,
        typer.Option("--freeze-gc/--no-freeze-gc",
                     help="Take each synced (cluster, resource)'s objects out of Python's "
                     "cyclic GC (default on: no full collection pauses every watcher "
                     "while it rescans millions of mirrored objects)."),
    ] = None,
    duration: Duration = None,
    debug: Debug = False,
) -> None:
    """Serve member clusters' resources through one Kubernetes-compatible API.

    Every cluster is mirrored into memory (or PostgreSQL: --storage) and served
    aggregated at / and per cluster under /clusters/NAME, so kubectl works against it. Also serves
    /healthz, /readyz (ready once every cluster synced, 503 while a member is
    unreachable beyond --unready-after) and /metrics (Prometheus). With
    --read-write, writes go to the member cluster that owns the object.
    """
    from kubemirror.cli import serve as serve_mod
    from kubemirror.cli.serve_config import ServeFlags

    flags = ServeFlags(
        config=str(config) if config else None,
        clusters=tuple(cluster or ()),
        resources=tuple(resource or ()),
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        host=host,
        port=port,
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
        tokens=tuple(token or ()),
        token_file=str(token_file) if token_file else None,
        insecure=insecure,
        read_only=read_only,
        metrics=metrics,
        write_kubeconfig=str(write_kubeconfig) if write_kubeconfig else None,
        duration=duration,
        unready_after=unready_after,
        accept_hosts=tuple(accept_hosts or ()),
        allowed_origins=tuple(allow_origin or ()),
        storage=storage,
        check_drift=check_drift,
        repair_drift=repair_drift,
        freeze_gc=freeze_gc,
    )
    _run(ctx, debug, lambda: serve_mod.run_serve(flags, _console()))


# -- kv -------------------------------------------------------------------------------------


# (parameter, EtcdOptions field, flag): the etcd client flags every kv command takes.
_ETCD_FLAGS: tuple[tuple[str, str, Any], ...] = (
    ("etcd", "endpoints", Etcd),
    ("etcd_config", "config_file", EtcdConfigFile),
    ("cacert", "cacert", CaCert),
    ("cert", "cert", Cert),
    ("key_file", "key", Key),
    ("user", "user", User),
    ("password", "password", Password),
)


def _etcd_client_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give a ``kv`` command the etcd client flags, declared once for every command.

    ``command`` takes a keyword-only ``etcd_options: EtcdOptions`` parameter; typer
    sees the flags of ``_ETCD_FLAGS`` in its place, and the wrapper turns them into
    ``EtcdOptions``.
    """
    # EtcdOptions is imported when a command runs (--help stays fast): only its name
    # needs a value here, and the parameter it annotates is replaced.
    signature = inspect.signature(command, eval_str=True, locals={"EtcdOptions": object})
    params = list(signature.parameters.values())
    at = [p.name for p in params].index("etcd_options")
    params[at:at + 1] = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
        for name, _, hint in _ETCD_FLAGS
    ]

    @functools.wraps(command)
    def with_etcd_options(*args: Any, **kwargs: Any) -> None:
        from kubemirror.cli import kv as kv_mod

        flags = {field: kwargs.pop(name) for name, field, _ in _ETCD_FLAGS}
        command(*args, etcd_options=kv_mod.EtcdOptions(**flags), **kwargs)

    with_etcd_options.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_etcd_options.__annotations__ = {p.name: p.annotation for p in params}
    return with_etcd_options


@kv_app.command("list")
@_etcd_client_flags
def kv_list(
    ctx: typer.Context,
    prefix: Prefix = "",
    *,
    etcd_options: EtcdOptions,
    output: Output = OutputFormat.TEXT,
    debug: Debug = False,
) -> None:
    """List the keys under PREFIX with their values."""
    from kubemirror.cli import kv as kv_mod

    _run(ctx, debug, lambda: kv_mod.run_list(etcd_options, prefix, output is OutputFormat.JSON))


@kv_app.command("get")
@_etcd_client_flags
def kv_get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key.")],
    *,
    etcd_options: EtcdOptions,
    output: Output = OutputFormat.TEXT,
    debug: Debug = False,
) -> None:
    """Print the value of KEY (exit status 1 if it does not exist)."""
    from kubemirror.cli import kv as kv_mod

    _run(ctx, debug, lambda: kv_mod.run_get(etcd_options, key, output is OutputFormat.JSON))


@kv_app.command("watch")
@_etcd_client_flags
def kv_watch(
    ctx: typer.Context,
    prefix: Prefix = "",
    *,
    etcd_options: EtcdOptions,
    output: Output = OutputFormat.TEXT,
    duration: Duration = None,
    debug: Debug = False,
) -> None:
    """Print the keys under PREFIX, then every change, until Ctrl-C."""
    from kubemirror.cli import kv as kv_mod

    _run(
        ctx,
        debug,
        lambda: kv_mod.run_watch(etcd_options, prefix, output is OutputFormat.JSON, duration),
    )


# -- envtest ------------------------------------------------------------------------------


@envtest_app.command("setup")
def envtest_setup(
    ctx: typer.Context,
    build: Annotated[
        bool,
        typer.Option("--build/--no-build", help="Build with Go when no binaries are found."),
    ] = True,
    debug: Debug = False,
) -> None:
    """Find kube-apiserver and etcd ($KUBEBUILDER_ASSETS, the cache) or build them with Go.

    The last line printed is the assets directory:
    [bold]export KUBEBUILDER_ASSETS=$(kubemirror envtest setup | tail -1)[/]
    """
    from kubemirror.cli import envtest as envtest_mod

    _run(ctx, debug, lambda: envtest_mod.run_setup(build=build))


@envtest_app.command("serve")
def envtest_serve(
    ctx: typer.Context,
    write_kubeconfig: Annotated[
        Path,
        typer.Option("--write-kubeconfig", help="Write the admin kubeconfig here."),
    ],
    duration: Duration = None,
    debug: Debug = False,
) -> None:
    """Run a real etcd and kube-apiserver on 127.0.0.1 until Ctrl-C (or --duration).

    TLS with a generated CA, client-certificate and token authentication, RBAC on.
    Both processes and their files are removed on exit.
    """
    from kubemirror.cli import envtest as envtest_mod

    target = write_kubeconfig.expanduser()
    _run(ctx, debug, lambda: envtest_mod.run_serve(target, duration, _console()))


# -- version --------------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Print the kubemirror version."""
    import kubemirror

    typer.echo(kubemirror.__version__)


def main() -> None:
    """Console-script entry point (``kubemirror``)."""
    app(prog_name="kubemirror")
