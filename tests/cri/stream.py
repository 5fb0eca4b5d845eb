"""A minimal client of the CRI streaming server's exec endpoint, over WebSocket (RFC 6455).

CRI's Exec returns a URL of containerd's streaming server; kubelet proxies
`kubectl exec` to it.  That server speaks Kubernetes' remotecommand protocol
over SPDY or WebSocket; this is the WebSocket side, subprotocol
`v4.channel.k8s.io`: every binary message starts with a channel byte (0
stdin, 1 stdout, 2 stderr, 3 the final status as a JSON metav1.Status).
Enough for a test: no stdin, no terminal resize.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
from urllib.parse import urlparse

PROTOCOL = "v4.channel.k8s.io"


def _read_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("stream closed mid-frame")
        out += chunk
    return out


def _frames(s: socket.socket):
    """(opcode, payload) of each server frame (servers never mask), reassembling continuations."""
    buf, first_op = b"", None
    while True:
        b0, b1 = _read_exact(s, 2)
        op, fin = b0 & 0x0F, b0 & 0x80
        n = b1 & 0x7F
        if n == 126:
            n, = struct.unpack(">H", _read_exact(s, 2))
        elif n == 127:
            n, = struct.unpack(">Q", _read_exact(s, 8))
        payload = _read_exact(s, n)
        if op == 0:
            buf += payload
        else:
            first_op, buf = op, payload
        if fin:
            yield first_op, buf
            buf = b""


def _send_close(s: socket.socket) -> None:
    mask = os.urandom(4)
    payload = struct.pack(">H", 1000)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    try:
        s.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
    except OSError:
        pass


def exec_stream(url: str, timeout: float = 60) -> tuple[bytes, bytes, int]:
    """Run the exec the URL stands for; (stdout, stderr, exit code)."""
    u = urlparse(url)
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        path = u.path + (f"?{u.query}" if u.query else "")
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                raise ConnectionError(f"no WebSocket upgrade: {head!r}")
            head += chunk
        status_line = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status_line + b" ":
            raise ConnectionError(f"no WebSocket upgrade: {head.decode(errors='replace')}")
        out = {1: b"", 2: b""}
        code = None
        for op, payload in _frames(s):
            if op == 8:                     # close
                break
            if op not in (1, 2) or not payload:
                continue
            channel, data = payload[0], payload[1:]
            if channel in out:
                out[channel] += data
            elif channel == 3 and data:
                st = json.loads(data)
                if st.get("status") == "Success":
                    code = 0
                else:
                    causes = (st.get("details") or {}).get("causes") or []
                    codes = [c.get("message") for c in causes if c.get("reason") == "ExitCode"]
                    code = int(codes[0]) if codes else -1
        _send_close(s)
    if code is None:
        raise ConnectionError("the stream ended without a status")
    return out[1], out[2], code
