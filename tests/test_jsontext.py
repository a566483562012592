"""Tests for kubemirror.jsontext: Go ``encoding/json`` text of decoded JSON values."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import jsontext


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (-2.0, "-2"),
        (0.25, "0.25"),
        (1e-6, "0.000001"),
        (9.99e-7, "9.99e-7"),
        (-3.5e-9, "-3.5e-9"),
        (1.2345678901234568e20, "123456789012345680000"),
        (9.99e20, "999000000000000000000"),
        (2e21, "2e+21"),
        (-1e100, "-1e+100"),
        (-0.0, "-0"),
        (math.inf, "inf"),
        (math.nan, "nan"),
    ],
    ids=repr,
)
def test_float_text(number: float, expected: str) -> None:
    assert jsontext.float_text(number) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_reads_back_as_the_same_number(number: float) -> None:
    text = jsontext.float_text(number)
    assert float(text) == number
    assert not text.endswith(".0")
    assert "e-0" not in text
    assert "e+0" not in text


class _Str(str):
    __slots__ = ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "x"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (7, "7"),
        (123456789012345678901234567890, "123456789012345678901234567890"),
        (3.0, "3"),
        ({"b": 1, "a": [1.0, "x", None]}, '{"a":[1.0,"x",null],"b":1}'),
        ([], "[]"),
        (frozenset(), "frozenset()"),
    ],
    ids=repr,
)
def test_value_text(value: Any, expected: str) -> None:
    assert jsontext.value_text(value) == expected


def test_value_text_keeps_a_string_as_is() -> None:
    value = _Str("x")
    assert jsontext.value_text(value) is value


def test_value_text_default_serialises_other_types() -> None:
    class Box(Mapping[str, int]):
        def __getitem__(self, key: str) -> int:
            return {"k": 1}[key]

        def __iter__(self) -> Iterator[str]:
            return iter(["k"])

        def __len__(self) -> int:
            return 1

    box = Box()
    assert jsontext.value_text(box).startswith("<")  # not JSON: str() fallback
    assert jsontext.value_text(box, default=dict) == '{"k":1}'


_SCALARS = st.integers(-(2**63), 2**63 - 1) | st.text() | st.booleans() | st.none()


@given(st.dictionaries(st.text(), _SCALARS))
def test_value_text_of_a_dict_is_sorted_json(value: dict[str, Any]) -> None:
    """Within orjson's integer range (beyond it the whole value falls back to ``str``)."""
    text = jsontext.value_text(value)
    assert orjson.loads(text) == value
    assert text == orjson.dumps(dict(sorted(value.items()))).decode()
