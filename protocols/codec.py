"""Byte codec for messages: a JSON header and raw little-endian array buffers. No pickle, ever.

The encoding is canonical: ``decode`` accepts only the exact bytes ``encode`` would write for the message it
returns (the header as ``encode`` dumps it, the arrays back to back in header order, nothing after them). So no
two byte strings carry the same message, and a changed byte can never pass unnoticed as, say, JSON whitespace.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from protocols.errors import ProtocolError
from protocols.messages import KINDS, Message, to_numpy
from protocols.validation import MAX_MESSAGE_BYTES

MAGIC = b"APF1"
DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint64", "uint8", "bool")


def encode(msg: Message) -> bytes:
    """Serialize a message to bytes."""
    specs, buffers, offset = [], [], 0
    for name, a in msg.arrays.items():
        arr = np.ascontiguousarray(to_numpy(a))
        if arr.dtype.name not in DTYPES:
            raise ProtocolError(f"array {name!r}: dtype {arr.dtype} cannot be sent")
        buf = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        specs.append(
            {"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset, "nbytes": len(buf)}
        )
        buffers.append(buf)
        offset += len(buf)
    header = _dump_header({**msg.header(), "config": msg.config, "arrays": specs})
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(buffers)


def _dump_header(h: dict) -> bytes:
    return json.dumps(h, allow_nan=False).encode()


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse bytes into a Message; any malformation raises ProtocolError."""
    try:
        return _decode(memoryview(data), max_bytes)
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, struct.error, UnicodeDecodeError, OverflowError) as e:
        raise ProtocolError(f"malformed message: {e}") from None


def _decode(data: memoryview, max_bytes: int) -> Message:
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < 8 or bytes(data[:4]) != MAGIC:
        raise ProtocolError("not an apfed message (bad magic)")
    (hlen,) = struct.unpack("<I", data[4:8])
    if 8 + hlen > len(data):
        raise ProtocolError("truncated message header")
    raw = bytes(data[8 : 8 + hlen])
    h = json.loads(raw.decode())
    if not isinstance(h, dict):
        raise ProtocolError("message header is not an object")
    if _dump_header(h) != raw:
        raise ProtocolError("message header is not in canonical form (altered, or not written by this codec)")
    body = data[8 + hlen :]
    for key, typ in (
        ("schema_version", int),
        ("kind", str),
        ("run_id", str),
        ("round", int),
        ("sender", str),
        ("receiver", str),
        ("config", dict),
        ("arrays", list),
    ):
        if not isinstance(h.get(key), typ) or isinstance(h.get(key), bool) and typ is int:
            raise ProtocolError(f"message header field {key!r} missing or not a {typ.__name__}")
    if h["kind"] not in KINDS:
        raise ProtocolError(f"unknown message kind {h['kind']!r}")
    arrays, end = {}, 0
    for s in h["arrays"]:
        if not isinstance(s, dict) or s.get("dtype") not in DTYPES or not isinstance(s.get("name"), str):
            raise ProtocolError("bad array descriptor in message header")
        if s["name"] in arrays:
            raise ProtocolError(f"array {s['name']!r} named twice in the message header")
        shape = tuple(int(x) for x in s["shape"])
        off, n = int(s["offset"]), int(s["nbytes"])
        dtype = np.dtype(s["dtype"]).newbyteorder("<")
        if any(x < 0 for x in shape) or off != end or off + n > len(body) or n != int(np.prod(shape)) * dtype.itemsize:
            raise ProtocolError(f"array {s['name']!r}: sizes in the header do not match the body")
        end = off + n
        arrays[s["name"]] = (
            np.frombuffer(body[off : off + n], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        )
    if end != len(body):
        raise ProtocolError(f"{len(body) - end} bytes after the last array")
    return Message(
        h["kind"], h["run_id"], h["round"], h["sender"], h["receiver"], arrays, h["config"], h["schema_version"]
    )
