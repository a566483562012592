"""The ``kubemirror`` command: demo, watch, serve, kv (typer + rich)."""

from __future__ import annotations

import typer

import kubemirror

app = typer.Typer(name="kubemirror", no_args_is_help=True, add_completion=False)


@app.command()
def version() -> None:
    """Print the kubemirror version."""
    typer.echo(kubemirror.__version__)


def main() -> None:
    """Console-script entry point."""
    app()
