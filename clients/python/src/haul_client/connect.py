"""The Connect protocol's envelopes (server streams), in JSON.

An envelope is one flag byte, a 4-byte big-endian length and that many
bytes of message. Flag 0x02 marks the end-of-stream message, whose JSON
may carry {"error": {"code", "message"}}; flag 0x01 a compressed message
(never asked for by this client).
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO, Dict, Iterator, Tuple

from .errors import HaulError, error

FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02

_HEADER = struct.Struct(">BI")


def encode_envelope(message: Dict[str, Any], flags: int = 0) -> bytes:
    """One envelope holding message as JSON."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(flags, len(body)) + body


def _read_exactly(fp: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = fp.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def read_envelopes(fp: BinaryIO) -> Iterator[Tuple[int, bytes]]:
    """(flags, payload) of each envelope read from fp, until its end.

    A stream cut inside an envelope raises HaulError("unavailable").
    """
    while True:
        header = _read_exactly(fp, _HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            raise error("unavailable", "stream cut inside an envelope header")
        flags, length = _HEADER.unpack(header)
        payload = _read_exactly(fp, length)
        if len(payload) < length:
            raise error("unavailable", "stream cut inside an envelope: %d of %d bytes" % (len(payload), length))
        yield flags, payload


def stream_messages(fp: BinaryIO) -> Iterator[Dict[str, Any]]:
    """The JSON messages of a Connect server stream.

    Ends at the end-of-stream envelope; raises the error it carries, and
    HaulError when the stream ends without one.
    """
    for flags, payload in read_envelopes(fp):
        if flags & FLAG_COMPRESSED:
            raise error("internal", "compressed envelope, which this client did not ask for")
        if flags & FLAG_END_STREAM:
            end = json.loads(payload or b"{}") or {}
            err = end.get("error")
            if err:
                raise error(err.get("code", "unknown"), err.get("message", ""))
            return
        yield json.loads(payload)
    raise error("unavailable", "the stream ended without its end-of-stream message")


def parse_stream(data: bytes) -> Iterator[Dict[str, Any]]:
    """stream_messages over bytes already read."""
    import io

    return stream_messages(io.BytesIO(data))


__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_END_STREAM",
    "HaulError",
    "encode_envelope",
    "parse_stream",
    "read_envelopes",
    "stream_messages",
]
