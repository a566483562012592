"""EtcdServer: a real etcd process started, killed and restarted on its data."""

from __future__ import annotations

import socket

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
