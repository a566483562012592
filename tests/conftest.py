"""Suite-wide set-up: the etcd the kvstore tests use.

Without ``$KUBEMIRROR_ETCD`` and without ``etcd`` on ``PATH``, the kvstore tests use the
etcd that ``kubemirror envtest`` built beside kube-apiserver (the release Kubernetes
pins, from the Go module proxy), when it is already in the cache.
"""

from __future__ import annotations

import os
import shutil

import pytest

from kubemirror import errors
from kubemirror.envtest import find_assets


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("KUBEMIRROR_ETCD") or shutil.which("etcd"):
        return
    try:
        assets = find_assets()
    except errors.ConfigError:
        return  # a broken $KUBEBUILDER_ASSETS is reported by the real-apiserver fixtures
    if assets is not None:
        os.environ["KUBEMIRROR_ETCD"] = str(assets.etcd)
