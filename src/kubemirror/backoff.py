"""Backoff: how long to wait before the next attempt after consecutive failures.

Bottom layer (imports only ``errors``); sans-I/O: it returns delays and never sleeps.
``exponential_delay`` is the one growth rule; ``Backoff`` adds the attempt count and
jitter for one retrying loop (the reflector's list/watch, the etcd backend's watches),
and the kvstore work queue's ``ExponentialFailureRateLimiter`` applies the same rule
per item.
"""

from __future__ import annotations

import math
import random

from kubemirror import errors

__all__ = ["Backoff", "exponential_delay"]


def exponential_delay(attempt: int, initial: float, factor: float, cap: float) -> float:
    """``min(cap, initial * factor**attempt)``, without overflow for any ``attempt``."""
    if attempt <= 0:
        return min(cap, initial)
    if factor > 1 and attempt * math.log(factor) > math.log(cap / initial):
        return cap
    return min(cap, initial * factor**attempt)


class Backoff:
    """Exponential backoff with full jitter, capped; sans-I/O (returns delays, never sleeps).

    The n-th consecutive ``next()`` returns a delay drawn uniformly from
    ``[d/2, d]`` (with ``jitter=True``) where ``d = min(cap, initial * factor**n)``;
    ``reset()`` after a success. Not thread-safe.
    """

    __slots__ = ("_attempt", "cap", "factor", "initial", "jitter", "rng")

    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        *,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1:
            raise errors.ConfigError(
                "backoff needs 0 < initial <= cap and factor >= 1",
                field="backoff",
                expression=f"initial={initial} cap={cap} factor={factor}",
            )
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Consecutive failures since the last ``reset``."""
        return self._attempt

    def next(self) -> float:
        """The delay before the next attempt; grows with each call."""
        delay = exponential_delay(self._attempt, self.initial, self.factor, self.cap)
        self._attempt += 1
        if self.jitter:
            delay = delay / 2 + self.rng.random() * delay / 2
        return delay

    def reset(self) -> None:
        """Start over from ``initial`` (after a success)."""
        self._attempt = 0
