"""Backoff: the one exponential growth rule, and the jittered retry delays built on it."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubemirror import errors
from kubemirror.backoff import Backoff, exponential_delay


@given(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=1e-4, max_value=10),
    st.floats(min_value=1, max_value=10),
    st.floats(min_value=1, max_value=1e6),
)
def test_exponential_delay_is_the_capped_formula_and_never_overflows(
    attempt: int, initial: float, factor: float, cap_over_initial: float
) -> None:
    cap = initial * cap_over_initial
    delay = exponential_delay(attempt, initial, factor, cap)
    assert initial <= delay <= cap or math.isclose(delay, cap)
    try:
        exact = min(cap, initial * factor**attempt)
    except OverflowError:
        exact = cap
    assert math.isclose(delay, exact, rel_tol=1e-9)
    assert exponential_delay(attempt + 1, initial, factor, cap) >= delay


def test_the_work_queue_limiter_uses_the_same_rule() -> None:
    from kubemirror.kvstore.workqueue import ExponentialFailureRateLimiter

    limiter = ExponentialFailureRateLimiter(base_delay=0.005, max_delay=1000.0)
    delays = [limiter.when("item") for _ in range(80)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays == [exponential_delay(n, 0.005, 2.0, 1000.0) for n in range(80)]
    assert delays[-1] == 1000.0


def test_backoff_grows_exponentially_to_the_cap_without_jitter() -> None:
    b = Backoff(initial=1, cap=10, factor=2, jitter=False)
    assert [b.next() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    b.reset()
    assert b.next() == 1


@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=0, max_value=30))
def test_backoff_jitter_stays_between_half_and_full_delay(seed: int, attempt: int) -> None:
    b = Backoff(initial=0.5, cap=20, rng=random.Random(seed))
    for _ in range(attempt):
        b.next()
    full = min(20, 0.5 * 2**attempt)
    assert full / 2 <= b.next() <= full


@pytest.mark.parametrize(
    ("initial", "cap", "factor"),
    [(0, 1, 2), (2, 1, 2), (1, 2, 0.5)],
    ids=["zero-initial", "cap-below-initial", "shrinking"],
)
def test_backoff_rejects_bad_parameters(initial: float, cap: float, factor: float) -> None:
    with pytest.raises(errors.ConfigError, match="backoff"):
        Backoff(initial, cap, factor)


