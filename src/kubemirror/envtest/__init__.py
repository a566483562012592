"""A real kube-apiserver and etcd for tests: controller-runtime's envtest, for Python.

``EnvTest`` starts the genuine control plane on loopback (``async with EnvTest() as
env: env.client_config``); ``setup_assets`` finds or builds its binaries
(``$KUBEBUILDER_ASSETS``, the cache, else ``go build`` from the Go module proxy at
the releases pinned in ``gobuild/go.mod``). The ``kubemirror envtest`` command and the
``real_kube_apiserver`` pytest fixture are built on these.
"""

from kubemirror.envtest.assets import (
    ASSETS_ENV,
    Assets,
    PinnedVersions,
    cache_root,
    find_assets,
    pinned_versions,
    setup_assets,
)
from kubemirror.envtest.environment import ADMIN_USER, EnvTest

__all__ = [
    "ADMIN_USER",
    "ASSETS_ENV",
    "Assets",
    "EnvTest",
    "PinnedVersions",
    "cache_root",
    "find_assets",
    "pinned_versions",
    "setup_assets",
]
