"""ECDH private set intersection (as in FATE): commutative Diffie-Hellman on Curve25519.

Each party holds a secret scalar. An ID is hashed to a curve point's u-coordinate (keyed BLAKE2b, salted per
run); a party "blinds" a list of points by multiplying each by its scalar (X25519). Because scalar
multiplication commutes, ``a·(b·H(x)) == b·(a·H(x))``: after both parties have blinded, equal IDs give equal
values, while a blinded value alone reveals nothing about the ID (computational Diffie-Hellman).

The flow, with the active party A fixing the order:
1. A sends ``a·H(id)`` for its IDs, in its order.
2. The passive P returns ``b·(a·H(id))`` for those, in the same order, and ``b·H(id')`` for its own IDs in a
   random order.
3. A computes ``a·(b·H(id'))``, matches: it learns which of its rows P holds and, for each, the position in P's
   shuffled list; it sends P those positions for the rows of the final intersection, in A's order.
Raw IDs and plain hashes never travel; each party learns the intersection and nothing else about the other's IDs.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from protocols.errors import ProtocolError

POINT = 32  # bytes of one blinded value
CHUNK = 65536  # values compared at once in match()


def hash_to_points(ids, salt: str) -> np.ndarray:
    """(n, 32) uint8: keyed BLAKE2b of each ID as an X25519 u-coordinate (the top bit is ignored by X25519)."""
    key = hashlib.sha256(b"apfed-psi:" + salt.encode()).digest()
    out = np.empty((len(ids), POINT), dtype=np.uint8)
    for i, s in enumerate(ids):
        out[i] = np.frombuffer(hashlib.blake2b(str(s).encode(), digest_size=POINT, key=key).digest(), np.uint8)
    return out


class PsiKey:
    """One party's secret scalar for one run."""

    def __init__(self) -> None:
        self._key = X25519PrivateKey.generate()

    def blind(self, points: np.ndarray) -> np.ndarray:
        """Multiply every point of a (n, 32) uint8 array by this party's scalar."""
        points = np.ascontiguousarray(points, dtype=np.uint8)
        if points.ndim != 2 or points.shape[1] != POINT:
            raise ProtocolError(f"PSI values must have shape (n, {POINT})")
        out = np.empty_like(points)
        exchange, public = self._key.exchange, X25519PublicKey.from_public_bytes
        try:
            for i, p in enumerate(points):
                out[i] = np.frombuffer(exchange(public(p.tobytes())), np.uint8)
        except ValueError:  # a low-order point: never produced by honest hashing
            raise ProtocolError("a PSI value is a low-order point; refusing it") from None
        return out


def blind_ids(
    key: PsiKey, ids: np.ndarray, salt: str, order: np.ndarray | None = None, chunk: int = CHUNK
) -> np.ndarray:
    """``key.blind(hash_to_points(ids[order], salt))``, a chunk at a time: the plain hashes (32 bytes per id) and
    the reordered ids never exist whole."""
    n = len(ids) if order is None else len(order)
    out = np.empty((n, POINT), dtype=np.uint8)
    for s in range(0, n, chunk):
        part = ids[s : s + chunk] if order is None else ids[order[s : s + chunk]]
        out[s : s + chunk] = key.blind(hash_to_points(part, salt))
    return out


def match(mine_double: np.ndarray, theirs_double: np.ndarray) -> np.ndarray:
    """For each of my doubly blinded values, the position of the equal value in theirs, or -1.

    Sort and binary search over the 32-byte values as opaque records: O(n log n), and no Python object per
    value (a dict of a million byte strings took hundreds of MB)."""
    if len(theirs_double) == 0:
        return np.full(len(mine_double), -1, dtype=np.int64)
    record = np.dtype((np.void, POINT))
    theirs = np.ascontiguousarray(theirs_double, dtype=np.uint8).view(record).ravel()
    mine = np.ascontiguousarray(mine_double, dtype=np.uint8).view(record).ravel()
    order = np.argsort(theirs, kind="stable")
    ranked = theirs[order]
    at = np.minimum(np.searchsorted(ranked, mine), len(ranked) - 1)
    found = np.empty(len(mine), dtype=bool)
    for s in range(0, len(mine), CHUNK):  # compare a chunk at a time: ranked[at] whole is 32 bytes per value
        found[s : s + CHUNK] = ranked[at[s : s + CHUNK]] == mine[s : s + CHUNK]
    return np.where(found, order[at], -1).astype(np.int64, copy=False)
