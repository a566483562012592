"""kubemirror.client: connecting to a Kubernetes API server and raw LIST/WATCH/GET.

``config`` finds the server and credentials (kubeconfig, in-cluster, exec plugins),
``transport`` speaks HTTP (``KubeClient``), ``discovery`` resolves resource names.
``ListOptions`` and ``ListPage`` are ``kubemirror.listing``'s, re-exported.
"""

from kubemirror.client.config import (
    ClientConfig,
    load_config,
    load_incluster_config,
    load_kube_config,
)
from kubemirror.client.discovery import ApiResource, Discovery
from kubemirror.client.transport import (
    KubeClient,
    WatchStream,
    parse_watch_line,
    resource_path,
)
from kubemirror.listing import ListOptions, ListPage

__all__ = [
    "ApiResource",
    "ClientConfig",
    "Discovery",
    "KubeClient",
    "ListOptions",
    "ListPage",
    "WatchStream",
    "load_config",
    "load_incluster_config",
    "load_kube_config",
    "parse_watch_line",
    "resource_path",
]
