"""What the cache, stores and watcher tests build their inputs from: a hand-driven
clock and a minimal Kubernetes-shaped object."""

from __future__ import annotations

from typing import Any


class FakeClock:
    """A ``types.Clock`` that only moves when the test says so (tests never sleep)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def obj(
    name: str,
    namespace: str | None = "ns",
    *,
    labels: dict[str, str] | None = None,
    rv: str = "1",
    **extra: Any,
) -> dict[str, Any]:
    """A minimal Pod: ``metadata.name``, ``resourceVersion`` and, unless ``namespace`` is
    ``None`` or ``""`` (cluster-scoped), ``metadata.namespace``; ``extra`` adds top-level
    fields."""
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if namespace:
        meta["namespace"] = namespace
    if labels is not None:
        meta["labels"] = labels
    return {"kind": "Pod", "metadata": meta, **extra}
