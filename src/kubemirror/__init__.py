"""kubemirror: live, indexed, in-memory mirrors of Kubernetes resources and etcd key spaces.

The public surface is listed in ``__all__``; everything else is reached through
its module (``kubemirror.cache``, ``kubemirror.multicluster``, ...).
"""

from kubemirror.errors import (
    ApiError,
    ConfigError,
    FIFOClosedError,
    GoneError,
    KeyFuncError,
    KubemirrorError,
    StoreError,
)
from kubemirror.keys import (
    DeletedFinalStateUnknown,
    ExplicitKey,
    meta_namespace_index_func,
    meta_namespace_key,
    split_meta_namespace_key,
)
from kubemirror.multicluster import KubeApiServer, MemoryStorage
from kubemirror.paths import FieldPath, compile_all, remove_fields
from kubemirror.selectors import FieldSelector, LabelSelector
from kubemirror.types import GroupVersionResource, Obj

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "ConfigError",
    "DeletedFinalStateUnknown",
    "ExplicitKey",
    "FIFOClosedError",
    "FieldPath",
    "FieldSelector",
    "GoneError",
    "GroupVersionResource",
    "KeyFuncError",
    "KubeApiServer",
    "KubemirrorError",
    "LabelSelector",
    "MemoryStorage",
    "Obj",
    "StoreError",
    "compile_all",
    "meta_namespace_index_func",
    "meta_namespace_key",
    "remove_fields",
    "split_meta_namespace_key",
]
