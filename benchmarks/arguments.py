"""Argument types the benchmark scripts share: a malformed flag is argparse's one-line
error (``error: argument --agents: 0 must be at least 1``), never a traceback or a run
with a nonsensical size."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (``nan`` and ``inf`` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def positive_floats(text: str) -> list[float]:
    """Comma-separated numbers above 0 (``0.05,0.25``)."""
    try:
        return [positive_float(part) for part in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected numbers above 0 separated by commas, e.g. 0.05,0.25 ({exc})"
        ) from None
