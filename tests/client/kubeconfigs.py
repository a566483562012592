"""Kubeconfig documents for the client tests, written as YAML files like kubectl's."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml


def kubeconfig(
    clusters: dict[str, dict[str, Any]],
    users: dict[str, dict[str, Any]],
    contexts: dict[str, tuple[str, str, str | None]],
    current: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig document; ``contexts`` maps a name to ``(cluster, user, namespace)``."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [
            {"name": n, "context": {"cluster": c, "user": u, **({"namespace": ns} if ns else {})}}
            for n, (c, u, ns) in contexts.items()
        ],
    }
    if current:
        doc["current-context"] = current
    return doc


def one_context(cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """A kubeconfig whose current context ``c`` joins its one cluster and its one user."""
    return kubeconfig({"s": cluster}, {"u": user}, {"c": ("s", "u", None)}, "c")


def exec_user(plugin: Path, api_version: str) -> dict[str, Any]:
    """A kubeconfig user whose credentials come from running the Python script ``plugin``."""
    return {"exec": {"apiVersion": api_version, "command": sys.executable, "args": [str(plugin)]}}


def write(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` to ``path`` as YAML; return ``path``."""
    path.write_text(yaml.safe_dump(doc))
    return path
