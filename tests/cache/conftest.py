"""Fixtures shared by the cache tests."""

from __future__ import annotations

import pytest

from tests.cache.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
