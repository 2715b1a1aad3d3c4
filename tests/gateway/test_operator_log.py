"""What the operator sees in the gateway's log: where it listens, and one line (not a
traceback) for a client that goes away mid-upload."""

from __future__ import annotations

import socket
import time

from tests.gateway.support import GatewayProcess


def _log(gw: GatewayProcess) -> str:
    return (gw.data_dir.parent / "gateway.log").read_text(errors="replace")


def test_gateway_says_where_it_listens(gw: GatewayProcess) -> None:
    assert f"ECR gateway serving on http://{gw.host}" in _log(gw)


def test_a_client_that_disconnects_mid_upload_is_one_log_line(gw: GatewayProcess) -> None:
    token = gw.token("alice", "repository:alice/disconnect:pull,push")["token"]
    client = gw.client("alice")
    _, location = client._start_upload("alice/disconnect")
    path = location.split(gw.host, 1)[1]
    before = _log(gw)
    with socket.create_connection(("127.0.0.1", gw.port)) as conn:
        conn.sendall((f"PATCH {path} HTTP/1.1\r\nHost: {gw.host}\r\nAuthorization: Bearer {token}\r\n"
                      "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        conn.sendall(b"100000\r\n" + b"\0" * 0x10000)  # a chunk announced, a part of it sent, then gone
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while "disconnected during PATCH" not in _log(gw)[len(before):] and time.monotonic() < deadline:
        time.sleep(0.1)
    new = _log(gw)[len(before):]
    assert "disconnected during PATCH /v2/alice/disconnect/blobs/uploads/" in new, new
    assert "Traceback" not in new and "ClientDisconnect" not in new, new
