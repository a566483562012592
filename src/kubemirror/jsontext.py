"""How Kubernetes (Go's ``encoding/json``) renders a decoded JSON value as text.

Bottom layer of kubemirror, below ``selectors`` and ``paths``: a field selector
compares a field against its text and an ``IndexBy`` path indexes an object by it,
and both must agree with the API server (``3`` not ``3.0``, ``1e-07`` as ``1e-7``,
``true``, maps with sorted keys). Pure functions, safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["float_text", "value_text"]


def float_text(number: float) -> str:
    """Format a float as Go's ``encoding/json`` does (``3`` not ``3.0``, ``1e-7``).

    NaN and the infinities, which JSON cannot carry, come back as Python's ``repr``.
    """
    if number != number or number in (float("inf"), float("-inf")):
        return repr(number)
    magnitude = abs(number)
    if magnitude == 0:
        return "-0" if str(number).startswith("-") else "0"
    if 1e-6 <= magnitude < 1e21:
        text = format(Decimal(repr(number)), "f")
        return text[:-2] if text.endswith(".0") else text
    return repr(number).replace("e-0", "e-").replace("e+0", "e+")


def value_text(value: object, default: Callable[[Any], Any] | None = None) -> str:
    """The text of a JSON value: a string as itself, ``null``, ``true``/``false``, a
    number as Go formats it, anything else as compact JSON with sorted keys.

    ``default`` is handed to ``orjson.dumps`` for types it cannot serialise (e.g. to
    turn a non-dict ``Mapping`` into a dict); what still cannot be serialised falls
    back to ``str(value)``. Never raises for a value whose ``str`` does not.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return str(value)
