"""End-to-end payload encryption between the active party and each passive.

Each party has a long-term X25519 key (a PEM file it keeps) and pins its peers' public-key fingerprints in its
own configuration. Before setup, the active party sends a HELLO carrying its long-term and a fresh ephemeral
public key; the passive checks the active's fingerprint against its pin and answers with its own pair, which
the active checks against its pin. Both then derive, with HKDF-SHA256 over both Diffie-Hellman results
(long-term x long-term authenticates, ephemeral x ephemeral gives forward secrecy), one AES-256-GCM key per
direction, salted by the run id and bound to the whole handshake transcript. A relay that swaps keys fails
the pin check; one that lacks both private keys cannot derive the session keys.

Every later message travels as ``seal(msg)``: the clear header (schema version, kind, run id, round, sender,
receiver) is the GCM associated data, and the whole encoded message (arrays and config) is the ciphertext,
under a fresh random 96-bit nonce (NIST SP 800-38D: at most 2**32 messages per key; a run sends far fewer).
Changing a byte, the key, the round, the kind or the addressee makes ``open`` refuse the message.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.messages import Message

SEALED = "sealed"  # the one array of a sealed message
NONCE = 12
INFO = b"apfed-seal-v1"


def fingerprint(public: bytes) -> str:
    """``sha256:<64 hex>`` of a raw 32-byte X25519 public key: what parties pin in their configuration."""
    return "sha256:" + hashlib.sha256(public).hexdigest()


class PartyKey:
    """A party's long-term X25519 key."""

    def __init__(self, private: X25519PrivateKey | None = None):
        self.private = private or X25519PrivateKey.generate()
        self.public = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def save(self, path: str | Path) -> None:
        """Write the private key as unencrypted PKCS#8 PEM, readable by the owner only."""
        pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)

    @classmethod
    def load(cls, path: str | Path) -> PartyKey:
        """Read a key written by ``save`` (or ``openssl genpkey -algorithm X25519``); clear error otherwise."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ProtocolError(f"cannot read the encryption key {path}: {e.strerror or e}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise ProtocolError(f"{path} is not an unencrypted PEM private key: {str(e).splitlines()[0]}") from None
        if not isinstance(key, X25519PrivateKey):
            raise ProtocolError(f"{path} holds a {type(key).__name__.lstrip('_')}, not an X25519 key")
        return cls(key)


def check_fingerprint(value: str, what: str) -> str:
    """A pinned fingerprint as written in configuration, normalised; clear error when malformed."""
    v = value.strip().lower()
    hexpart = v.removeprefix("sha256:")
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ProtocolError(f"{what}: {value!r} is not a key fingerprint (sha256:<64 hex digits>)")
    return "sha256:" + hexpart


def parse_pins(pins: list[str], option: str = "--pin") -> dict[str, str]:
    """``NAME=sha256:<hex>`` pins as {name: fingerprint}; a malformed pin, or a name pinned to two different
    fingerprints (an operator's slip that must not resolve silently to one of them), is an error."""
    out: dict[str, str] = {}
    for p in pins:
        name, sep, fp = p.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ProtocolError(f"{option} takes NAME=sha256:<hex>, got {p!r}")
        fp = check_fingerprint(fp, f"pin of {name}")
        if out.get(name, fp) != fp:
            raise ProtocolError(f"{name} is pinned twice, to different fingerprints")
        out[name] = fp
    return out


@dataclass
class Sealing:
    """One party's encryption settings: its own key and the fingerprints it pins, by party name."""

    key: PartyKey
    pins: dict[str, str]

    def pin(self, party: str) -> str:
        if party not in self.pins:
            raise ProtocolError(f"encryption is on but no key fingerprint is pinned for {party!r}")
        return check_fingerprint(self.pins[party], f"pinned fingerprint of {party}")


class Handshake:
    """One side of the HELLO key agreement: ``offer()`` goes in the HELLO (or its reply) config,
    ``finish(...)`` checks the peer's offer against the pin and returns the session channel."""

    def __init__(self, sealing: Sealing):
        self.sealing = sealing
        self.ephemeral = X25519PrivateKey.generate()
        self.eph_public = self.ephemeral.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def offer(self) -> dict[str, str]:
        return {"seal_key": self.sealing.key.public.hex(), "seal_ephemeral": self.eph_public.hex()}

    def finish(self, peer_offer: dict, *, peer: str, run_id: str, active: str, passive: str, own: str) -> Channel:
        try:
            static, eph = bytes.fromhex(str(peer_offer["seal_key"])), bytes.fromhex(str(peer_offer["seal_ephemeral"]))
        except (KeyError, ValueError):
            raise ProtocolError(f"{peer} did not offer encryption keys; is encryption on at both parties?") from None
        if len(static) != 32 or len(eph) != 32:
            raise ProtocolError(f"{peer} offered malformed encryption keys")
        if fingerprint(static) != self.sealing.pin(peer):
            raise ProtocolError(
                f"{peer}'s key fingerprint {fingerprint(static)} does not match the pinned one; refusing to talk"
            )
        try:
            ss = self.sealing.key.private.exchange(X25519PublicKey.from_public_bytes(static))
            ee = self.ephemeral.exchange(X25519PublicKey.from_public_bytes(eph))
        except ValueError:  # an all-zero shared secret: a low-order point
            raise ProtocolError(f"{peer} offered an invalid public key") from None
        mine = (self.sealing.key.public, self.eph_public)
        a_keys, p_keys = (mine, (static, eph)) if own == active else ((static, eph), mine)
        transcript = b"|".join([INFO, active.encode(), passive.encode(), *a_keys, *p_keys])
        okm = HKDF(hashes.SHA256(), 64, salt=run_id.encode(), info=transcript).derive(ss + ee)
        to_passive, to_active = okm[:32], okm[32:]
        send, recv = (to_passive, to_active) if own == active else (to_active, to_passive)
        return Channel(send, recv)


def _aad(msg: Message) -> bytes:
    return json.dumps(msg.header(), sort_keys=True).encode()


class Channel:
    """Seals outgoing and opens incoming messages of one active–passive pair (one key per direction)."""

    def __init__(self, send_key: bytes, recv_key: bytes):
        self.send_key, self.recv_key = send_key, recv_key
        self._send, self._recv = AESGCM(send_key), AESGCM(recv_key)

    def seal(self, msg: Message) -> Message:
        nonce = os.urandom(NONCE)
        body = self._send.encrypt(nonce, encode(msg), _aad(msg))
        sealed = np.frombuffer(nonce + body, dtype=np.uint8)
        return Message(msg.kind, msg.run_id, msg.round, msg.sender, msg.receiver, {SEALED: sealed}, {})

    def open(self, msg: Message) -> Message:
        if set(msg.arrays) != {SEALED} or msg.config:
            raise ProtocolError(f"unencrypted {msg.kind} message from {msg.sender!r} refused (encryption is on)")
        data = np.asarray(msg.arrays[SEALED], dtype=np.uint8).tobytes()
        try:
            plain = self._recv.decrypt(data[:NONCE], data[NONCE:], _aad(msg))
        except (InvalidTag, ValueError):
            raise ProtocolError(
                f"{msg.kind} message from {msg.sender!r} (round {msg.round}) failed authentication: "
                "altered, replayed from another round, re-addressed, or sealed with another key"
            ) from None
        inner = decode(plain)
        if inner.header() != msg.header():
            raise ProtocolError(f"sealed message from {msg.sender!r}: inner header differs from the outer one")
        return inner

    def state(self) -> dict:
        return {"send": self.send_key.hex(), "recv": self.recv_key.hex()}

    @classmethod
    def from_state(cls, state: dict) -> Channel:
        return cls(bytes.fromhex(state["send"]), bytes.fromhex(state["recv"]))
