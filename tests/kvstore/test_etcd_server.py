"""EtcdServer: a real etcd process started, killed and restarted on its data."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kubemirror.kvstore import etcd_server

pytestmark = pytest.mark.etcd


def test_etcd_server_kill_and_restart_keep_data(tmp_path: object, etcd_binary: str) -> None:
    server = etcd_server.EtcdServer(str(tmp_path), binary=etcd_binary)
    try:
        server.start()
        pid = server.pid
        assert server.healthy()
        server.kill()
        assert not server.running
        assert not server.healthy()
        server.restart()
        assert server.pid not in (None, pid)
        assert server.healthy()
        server.stop()
        assert not server.running
    finally:
        server.cleanup()


def test_first_start_replaces_a_port_taken_meanwhile(tmp_path: object, etcd_binary: str) -> None:
    server = etcd_server.EtcdServer(str(tmp_path), binary=etcd_binary)
    taken = server.client_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
        try:
            server.start()
            assert server.client_port != taken
            assert server.healthy()
        finally:
            server.cleanup()


def test_find_etcd_binary_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$KUBEMIRROR_ETCD alone when set, then $KUBEBUILDER_ASSETS/etcd, then PATH."""
    assets, on_path = tmp_path / "assets", tmp_path / "bin"
    for directory in (assets, on_path):
        directory.mkdir()
        binary = directory / "etcd"
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.delenv("KUBEMIRROR_ETCD", raising=False)
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    assert etcd_server.find_etcd_binary() == str(on_path / "etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert etcd_server.find_etcd_binary() == str(assets / "etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "empty"))
    assert etcd_server.find_etcd_binary() == str(on_path / "etcd")
    monkeypatch.setenv("KUBEMIRROR_ETCD", str(tmp_path / "missing"))
    assert etcd_server.find_etcd_binary() is None
