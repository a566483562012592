"""Fixtures shared by the cache tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.objects import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every few microseconds so interleavings actually happen."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
