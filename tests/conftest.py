"""Suite-wide set-up: the mutation detector, and the etcd the kvstore tests use.

Every informer and watcher store in the suite (subprocesses included) runs with the
mutation detector in strict mode (``KUBEMIRROR_MUTATION_DETECTOR``, unless already
set), so code of ours that mutates a shared stored object fails a test: a read raises
``MutationError``, and a mutation the detector logs (at a write, or periodically)
fails the test unless it is marked ``mutates_stored_objects``.

Without ``$KUBEMIRROR_ETCD`` and without ``etcd`` on ``PATH``, the kvstore tests use the
etcd that ``kubemirror envtest`` built beside kube-apiserver (the release Kubernetes
pins, from the Go module proxy), when it is already in the cache.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator

import pytest

from kubemirror import errors
from kubemirror.cache import mutation_detector
from kubemirror.cache.mutation_detector import ENV_VAR
from kubemirror.envtest import find_assets


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(ENV_VAR, "strict")
    if os.environ.get("KUBEMIRROR_ETCD") or shutil.which("etcd"):
        return
    try:
        assets = find_assets()
    except errors.ConfigError:
        return  # a broken $KUBEBUILDER_ASSETS is reported by the real-apiserver fixtures
    if assets is not None:
        os.environ["KUBEMIRROR_ETCD"] = str(assets.etcd)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_mutation_of_stored_objects(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which the mutation detector reported a mutated stored object."""
    collect = _Collect()
    logger = logging.getLogger(mutation_detector.__name__)
    logger.addHandler(collect)
    try:
        yield
    finally:
        logger.removeHandler(collect)
    if collect.messages and request.node.get_closest_marker("mutates_stored_objects") is None:
        pytest.fail("a stored object was mutated: " + "; ".join(collect.messages[:3]))
