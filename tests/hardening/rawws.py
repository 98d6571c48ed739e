"""A WebSocket client written out by hand, for attacks a well-behaved library will not make:
a handshake and then silence, a message sent in fragments that never ends, a socket that
never reads (a small receive buffer set before it connects)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

__all__ = ["RawSocket", "ws_frame"]


def ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client frame (masked, as a client must)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.head = b""

    @classmethod
    async def open(
        cls,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        local_addr: str | None = None,
        rcvbuf: int | None = None,
    ) -> RawSocket:
        """Connect to 127.0.0.1:``port`` and ask for a WebSocket at ``path``; ``status``
        says what the server answered (101, or an HTTP error before any upgrade)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if local_addr is not None:
            sock.bind((local_addr, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        raw = cls(reader, writer)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw.head = await reader.readuntil(b"\r\n\r\n")
        raw.status = int(raw.head.split(b" ", 2)[1])
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload)."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def read_until_closed(self) -> tuple[int | None, list[bytes]]:
        """Read every frame until the server's close frame or the end of the stream:
        (the close code or None, the text payloads before it)."""
        texts: list[bytes] = []
        while True:
            try:
                op, payload = await self.read_frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                return None, texts
            if op == 0x8:
                return (struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None), texts
            if op == 0x1:
                texts.append(payload)

    def close(self) -> None:
        self.writer.transport.abort()
