"""Validation of a received message against what was requested: run id, round, sender, kind, schema,
array names, shapes, dtypes, finite values, index bounds and size limits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from protocols.errors import ProtocolError
from protocols.messages import ERROR, SCHEMA_VERSION, Message, dtype_name

MAX_MESSAGE_BYTES = 1 << 30


@dataclass(frozen=True)
class ArraySpec:
    """Expected array: shape with None for any size, allowed dtypes, and checks on its values."""

    shape: tuple[int | None, ...]
    dtypes: tuple[str, ...] = ("float32",)
    finite: bool = True
    index_bound: int | None = None  # integer arrays: every value must lie in [0, bound)
    required: bool = True


def _host_view(a, dtype: str) -> np.ndarray | None:
    """A zero-copy numpy view of a numpy array or CPU tensor (numpy checks are several times faster on small
    arrays than torch's); None for device tensors and dtypes numpy lacks (bfloat16)."""
    if isinstance(a, np.ndarray):
        return a
    if dtype == "bfloat16" or not a.is_cpu:
        return None
    return a.detach().numpy()


def _host_finite(h: np.ndarray) -> bool:
    """Every value of a float array is finite. One BLAS pass first: a NaN or an infinity makes the sum of squares
    NaN or infinite; only when it is not finite (or for float16, which BLAS lacks) are the values read again
    exactly, since huge finite values (beyond about 1e19 in float32) also overflow the squares."""
    if h.dtype != np.float16 and math.isfinite(np.vdot(h, h)):
        return True
    # two reductions, no temporary array: min and max propagate NaN, and every comparison with NaN is False
    return bool(h.min() > -np.inf) and bool(h.max() < np.inf)


def _finite_check(a, dtype: str):
    """True/False for host arrays; for device tensors a pending check (see ``_read_back``), not yet read back."""
    h = _host_view(a, dtype)
    if h is not None:
        return h.size == 0 or _host_finite(h)
    if a.numel() == 0:
        return True
    import torch

    if a.dtype == torch.float64:  # a float64 sum of huge finite float64 values could overflow
        return _pending(torch.isfinite(a).all())
    # One reduction kernel (torch.isfinite alone launches four): a NaN or an infinity makes the sum NaN or
    # infinite, and finite float32/float16/bfloat16 values cannot overflow a float64 sum.
    return a.sum(dtype=torch.float64)


def _pending(ok):
    """A device bool as a pending check: a float64 scalar that is finite exactly when ``ok`` holds."""
    import torch

    return torch.where(ok, 0.0, float("nan")).to(torch.float64)


def _bounds_check(a, bound: int, dtype: str):
    if len(a.shape) and a.shape[0] == 0:
        return True
    h = _host_view(a, dtype)
    if h is not None:
        if h.dtype.kind == "i":  # one reduction: a negative value read as unsigned is beyond any bound
            return bool(h.view(h.dtype.str.replace("i", "u")).max() < bound)
        return bool((h.min() >= 0) & (h.max() < bound))
    lo, hi = a.aminmax()
    return _pending((lo >= 0) & (hi < bound))


def _read_back(checks: list) -> list[bool]:
    """Every pending device check (a float64 scalar, finite when the check passes) read back with one host sync (a
    sync per check stalls a GPU each time)."""
    if len(checks) == 1:
        return [math.isfinite(checks[0].item())]
    import torch

    return [math.isfinite(v) for v in torch.stack([c.to(checks[0].device) for c in checks]).tolist()]


def first_failures(deferred: dict[str, list[tuple]]) -> dict[str, str]:
    """Read the device checks that ``validate(..., deferred=...)`` left for several messages back with one host
    sync; return each failing message's first problem, by the key it was filed under."""
    flat = [(key, check, why) for key, checks in deferred.items() for check, why in checks]
    failures: dict[str, str] = {}
    if flat:
        for (key, _, why), ok in zip(flat, _read_back([c for _, c, _ in flat]), strict=True):
            if not ok:
                failures.setdefault(key, why)
    return failures


def validate(
    msg: Message,
    *,
    kind: str | tuple[str, ...],
    run_id: str,
    round: int,
    sender: str,
    receiver: str,
    arrays: dict[str, ArraySpec],
    max_bytes: int = MAX_MESSAGE_BYTES,
    deferred: list | None = None,
) -> Message:
    """Return ``msg`` if it is exactly what was asked for; raise ProtocolError naming the first problem.

    Value checks of device tensors need a host sync: with ``deferred`` (a list) they are appended to it as
    (pending check, problem) instead, for ``first_failures`` to read back with other messages' checks."""
    who = f"message from {msg.sender!r}"
    if msg.schema_version != SCHEMA_VERSION:
        raise ProtocolError(f"{who}: schema version {msg.schema_version}, expected {SCHEMA_VERSION}")
    if msg.kind == ERROR:
        raise ProtocolError(f"{msg.sender} reported an error: {msg.config.get('error', 'unknown error')}")
    kinds = (kind,) if isinstance(kind, str) else kind
    if msg.kind not in kinds:
        raise ProtocolError(f"{who}: kind {msg.kind!r}, expected {' or '.join(kinds)}")
    if msg.run_id != run_id:
        raise ProtocolError(f"{who}: run id {msg.run_id!r} is not this run's ({run_id!r})")
    if msg.round != round:
        raise ProtocolError(f"{who}: round {msg.round}, expected {round}")
    if msg.sender != sender or msg.receiver != receiver:
        raise ProtocolError(f"message addressed {msg.sender}->{msg.receiver}, expected {sender}->{receiver}")
    extra = msg.arrays.keys() - arrays.keys()
    if extra:
        raise ProtocolError(f"{who}: unexpected arrays {sorted(extra)}")
    nbytes = msg.nbytes()
    if nbytes > max_bytes:
        raise ProtocolError(f"{who}: {nbytes} bytes exceeds the limit of {max_bytes}")
    checks: list[tuple] = []  # value checks (result, array name, index bound or None), read back together
    for name, spec in arrays.items():
        a = msg.arrays.get(name)
        if a is None:
            if spec.required:
                raise ProtocolError(f"{who}: missing array {name!r}")
            continue
        shape = tuple(a.shape)
        if len(shape) != len(spec.shape):
            raise ProtocolError(f"{who}: array {name!r} has shape {shape}, expected {spec.shape}")
        for e, s in zip(spec.shape, shape, strict=True):
            if e is not None and e != s:
                raise ProtocolError(f"{who}: array {name!r} has shape {shape}, expected {spec.shape}")
        dtype = dtype_name(a)
        if dtype not in spec.dtypes:
            raise ProtocolError(f"{who}: array {name!r} has dtype {dtype}, expected {'/'.join(spec.dtypes)}")
        if spec.finite and dtype.startswith(("float", "bfloat")):
            checks.append((_finite_check(a, dtype), name, None))
        if spec.index_bound is not None:
            checks.append((_bounds_check(a, spec.index_bound, dtype), name, spec.index_bound))
    on_device = []
    for ok, name, bound in checks:
        if ok is True:
            continue
        why = "holds NaN or infinite values" if bound is None else f"holds sample indices outside [0, {bound})"
        if ok is False:
            raise ProtocolError(f"{who}: array {name!r} {why}")
        on_device.append((ok, f"{who}: array {name!r} {why}"))
    if deferred is not None:
        deferred.extend(on_device)
    elif failed := first_failures({"": on_device}):
        raise ProtocolError(failed[""])
    return msg
