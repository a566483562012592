"""A SharedStore collaborator process for the multi-process tests.

Usage: python collaborator.py ENDPOINT PREFIX NAME LEASE_TTL

Joins the shared store ``PREFIX`` on the etcd server at ``ENDPOINT``, owns one key
``NAME``, and prints its view (a JSON list of key names) on stdout every time it
changes. It leaves gracefully (``close()``: its key is deleted) when stdin closes;
a SIGKILL leaves its key to expire with its lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from kubemirror.kvstore import etcd, key, shared_store


class Printer:
    def __init__(self) -> None:
        self.store: shared_store.SharedStore | None = None
        self.last: list[str] | None = None

    def show(self) -> None:
        if self.store is None:
            return
        view = sorted(self.store.shared_keys_map())
        if view != self.last:
            self.last = view
            sys.stdout.write(json.dumps(view) + "\n")
            sys.stdout.flush()

    def on_update(self, k: key.Key) -> None:
        self.show()

    def on_delete(self, k: key.NamedKey) -> None:
        self.show()


async def main(endpoint: str, prefix: str, name: str, ttl: float) -> None:
    printer = Printer()
    backend = etcd.EtcdBackend(endpoint, lease_ttl=ttl, name=name)
    store = shared_store.SharedStore(
        shared_store.SharedStoreConfig(
            prefix=prefix, key_creator=key.kv_pair_creator, backend=backend, observer=printer
        )
    )
    await store.start()
    printer.store = store
    await store.update_local_key_sync(key.KVPair(name, str(os.getpid()).encode()))
    printer.show()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until stdin closes
    await store.close()
    await backend.close()


if __name__ == "__main__":
    endpoint_arg, prefix_arg, name_arg, ttl_arg = sys.argv[1:5]
    asyncio.run(main(endpoint_arg, prefix_arg, name_arg, float(ttl_arg)))
