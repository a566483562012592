"""kubemirror.informer: client-go's shared informer, one module per concept.

``shared_informer`` (``SharedInformer``, the store modes), ``thread``
(``InformerThread``, its facade for plain scripts), ``handlers``
(``HandlerRegistration``: each handler's queue and delivery task) and ``metrics``
(``PrometheusMetrics`` and the metric catalogue shared with ``kubemirror serve``'s
collector).
"""

from kubemirror.informer.handlers import HandlerRegistration, ResourceEventHandler
from kubemirror.informer.metrics import PrometheusMetrics
from kubemirror.informer.shared_informer import (
    MIRROR_IGNORE_FIELDS,
    STORE_COMPACT,
    STORE_DICT,
    SharedInformer,
)
from kubemirror.informer.thread import InformerThread

__all__ = [
    "HandlerRegistration",
    "InformerThread",
    "MIRROR_IGNORE_FIELDS",
    "PrometheusMetrics",
    "ResourceEventHandler",
    "STORE_COMPACT",
    "STORE_DICT",
    "SharedInformer",
]
