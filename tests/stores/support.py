"""Helpers shared by the stores and watcher tests (a fake clock, object builders)."""

from __future__ import annotations

from typing import Any


class FakeClock:
    """An injectable ``types.Clock`` that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def obj(
    name: str,
    namespace: str = "default",
    rv: str = "1",
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A minimal Kubernetes-shaped object."""
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if namespace:
        meta["namespace"] = namespace
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, **extra}
