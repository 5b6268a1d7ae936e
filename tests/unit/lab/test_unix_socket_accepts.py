"""The readiness probe for OVS daemons' unix sockets: a bound socket is not yet ready."""

import socket

from routeflow.lab.ovs import unix_socket_accepts


def test_a_socket_file_is_ready_only_once_it_listens(tmp_path):
    path = str(tmp_path / "db.sock")
    assert not unix_socket_accepts(path)  # no file
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)  # the file exists: what the old probe waited for
        assert not unix_socket_accepts(path)
        server.listen(1)
        assert unix_socket_accepts(path)
