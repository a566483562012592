"""The ``kubemirror`` command: ``demo``, ``watch``, ``serve`` and ``kv`` (typer + rich).

The top layer (see DESIGN.md). ``app`` is the typer application and ``main``
the console-script entry point; each command lives in its own module.
"""

from kubemirror.cli.app import app, main

__all__ = ["app", "main"]
