"""The public API changes only on purpose: ``__all__`` lists exactly the public names."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "kubemirror",
    "kubemirror.cache",
    "kubemirror.stores",
    "kubemirror.informer",
    "kubemirror.watcher",
    "kubemirror.client",
    "kubemirror.multicluster",
    "kubemirror.multicluster.postgres",
    "kubemirror.kvstore",
    "kubemirror.selectors",
    "kubemirror.envtest",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(exported) == public, f"{name}: __all__ differs from public names"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    for attr in module.__all__:
        assert getattr(module, attr) is not None
