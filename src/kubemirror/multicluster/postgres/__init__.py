"""Multi-cluster storage in PostgreSQL (``pip install kubemirror[postgres]``).

``PostgresStorage`` is a drop-in for ``MemoryStorage`` behind ``KubeApiServer``,
``ClusterSynchro`` and ``kubemirror serve --storage postgresql://...``, shared by
several replicas. Importing this package needs psycopg 3 and psycopg_pool.
"""

from kubemirror.multicluster.postgres.lease import LeaseHolder, PostgresSyncLease
from kubemirror.multicluster.postgres.resource_storage import (
    PostgresClusterStore,
    PostgresResourceStorage,
)
from kubemirror.multicluster.postgres.storage import PostgresStorage

__all__ = [
    "LeaseHolder",
    "PostgresClusterStore",
    "PostgresResourceStorage",
    "PostgresStorage",
    "PostgresSyncLease",
]
