"""The PostgreSQL schema of ``PostgresStorage``: tables, indexes, migrations (multicluster layer).

Tables (all names start with ``kubemirror_``):

* ``meta``: one row per setting (``prefix``: the storage's resourceVersion prefix,
  shared by every replica; ``schema_version``).
* ``counter``: one row, ``index`` = the last storage-wide index issued and
  ``trimmed`` = the newest index removed from the event log. Every write
  transaction updates this row first, so writers are serialised on its row
  lock and commit in index order: any snapshot sees a gap-free prefix of the log.
* ``clusters``: the prepared member clusters.
* ``objects``: the current state, one row per (resource, cluster, key) with the
  columns selectors need (namespace, name, labels JSONB under a GIN index) and
  the stored JSON as received plus stamps (``object`` bytea, never re-encoded).
* ``events``: the event log, the truth watches read (``seq`` = the storage
  index, type, object and the replaced state ``previous``), trimmed to a bounded
  retention.

Text columns that order keys use ``COLLATE "C"`` (code point order, as the memory
storage sorts). ``migrate`` creates or upgrades the schema under a transaction
advisory lock, so replicas starting together do it once. Pure SQL text and one
coroutine; no state.
"""

from __future__ import annotations

from typing import Final

import psycopg

from kubemirror import errors

__all__ = ["NOTIFY_CHANNEL", "SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION: Final = 1
"""The schema this package writes; ``migrate`` upgrades older ones and refuses newer ones."""

NOTIFY_CHANNEL: Final = "kubemirror_events"
"""LISTEN/NOTIFY channel: the payload is the newest index, or ``clusters``."""

_MIGRATION_LOCK: Final = 0x6B6D6972  # "kmir": serialises concurrent migrations
_OPTIONAL: Final = "-- optional\n"  # a statement whose failure (an unsupported feature) is fine

_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE kubemirror_meta (
            key text PRIMARY KEY,
            value text NOT NULL)""",
        """CREATE TABLE kubemirror_counter (
            id int PRIMARY KEY CHECK (id = 1),
            index bigint NOT NULL,
            trimmed bigint NOT NULL)""",
        "INSERT INTO kubemirror_counter VALUES (1, 0, 0)",
        """CREATE TABLE kubemirror_clusters (
            name text COLLATE "C" PRIMARY KEY)""",
        """CREATE TABLE kubemirror_objects (
            resource text COLLATE "C" NOT NULL,
            cluster text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            namespace text COLLATE "C" NOT NULL,
            name text COLLATE "C" NOT NULL,
            labels jsonb NOT NULL,
            seq bigint NOT NULL,
            original_rv text NOT NULL,
            object bytea NOT NULL,
            PRIMARY KEY (resource, cluster, key))""",
        # lz4 (PostgreSQL >= 14 built with it) compresses several times faster than the
        # default pglz: loading is ~2x faster; without it the default stays
        _OPTIONAL + "ALTER TABLE kubemirror_objects ALTER COLUMN object SET COMPRESSION lz4",
        "CREATE INDEX kubemirror_objects_labels ON kubemirror_objects USING gin (labels)",
        """CREATE INDEX kubemirror_objects_namespace
            ON kubemirror_objects (resource, namespace, cluster, key)""",
        """CREATE TABLE kubemirror_events (
            seq bigint PRIMARY KEY,
            resource text COLLATE "C" NOT NULL,
            cluster text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            namespace text COLLATE "C" NOT NULL,
            type text NOT NULL,
            original_rv text NOT NULL,
            object bytea NOT NULL,
            previous bytea,
            created timestamptz NOT NULL DEFAULT now())""",
        _OPTIONAL + "ALTER TABLE kubemirror_events ALTER COLUMN object SET COMPRESSION lz4",
        _OPTIONAL + "ALTER TABLE kubemirror_events ALTER COLUMN previous SET COMPRESSION lz4",
        "CREATE INDEX kubemirror_events_resource ON kubemirror_events (resource, seq)",
    ),
}


async def migrate(conn: psycopg.AsyncConnection[tuple[object, ...]], prefix: str) -> str:
    """Create or upgrade the schema; returns the storage prefix (``prefix`` if this call
    created the schema, else the one stored). Raises ``ConfigError`` for a database
    written by a newer kubemirror. Runs in its own transaction on ``conn``."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        cur = await conn.execute("SELECT to_regclass('kubemirror_meta') IS NOT NULL")
        row = await cur.fetchone()
        exists = bool(row and row[0])
        version = 0
        if exists:
            cur = await conn.execute(
                "SELECT value FROM kubemirror_meta WHERE key = 'schema_version'"
            )
            found = await cur.fetchone()
            version = int(str(found[0])) if found else 0
        if version > SCHEMA_VERSION:
            raise errors.ConfigError(
                f"the database holds kubemirror schema {version}; this version knows "
                f"up to {SCHEMA_VERSION}",
                field="storage",
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                if not statement.startswith(_OPTIONAL):
                    await conn.execute(statement.encode())
                    continue
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute(statement.encode())
                except psycopg.errors.FeatureNotSupported:
                    pass
        if version == 0:
            await conn.execute(
                "INSERT INTO kubemirror_meta VALUES ('prefix', %s), ('schema_version', %s)",
                (prefix, str(SCHEMA_VERSION)),
            )
        elif version < SCHEMA_VERSION:
            await conn.execute(
                "UPDATE kubemirror_meta SET value = %s WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION),),
            )
        cur = await conn.execute("SELECT value FROM kubemirror_meta WHERE key = 'prefix'")
        stored = await cur.fetchone()
        return str(stored[0]) if stored else prefix
