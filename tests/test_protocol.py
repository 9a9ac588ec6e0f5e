import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import ArraySpec, Message, ProtocolError, decode, encode, validate


def _msg(**arrays):
    return Message(
        "train",
        "run1",
        3,
        "active",
        "passive1",
        arrays or {"idx": np.arange(4, dtype=np.int64)},
        {"loss": 0.5, "name": "x", "flags": [1, 2]},
    )


def test_codec_round_trip_numpy_and_torch():
    m = _msg(idx=np.arange(5, dtype=np.int64), act=torch.randn(5, 3), mask=np.array([True, False]))
    d = decode(encode(m))
    assert (d.kind, d.run_id, d.round, d.sender, d.receiver, d.config) == (
        m.kind,
        m.run_id,
        m.round,
        m.sender,
        m.receiver,
        m.config,
    )
    assert np.array_equal(d.arrays["idx"], m.arrays["idx"])
    assert np.array_equal(d.arrays["act"], m.arrays["act"].numpy())
    assert d.arrays["mask"].dtype == np.bool_


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"APF1",
        b"XXXX\x00\x00\x00\x00",
        b"APF1\xff\xff\xff\xff{}",
        b"APF1\x02\x00\x00\x00{}",
        b"APF1\x04\x00\x00\x00null",
    ],
)
def test_malformed_bytes_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode(data)


def test_truncated_body_is_refused():
    data = encode(_msg(act=np.ones((10, 4), np.float32)))
    with pytest.raises(ProtocolError):
        decode(data[:-8])


def _reframed(header: dict, body: bytes) -> bytes:
    import json
    import struct

    raw = json.dumps(header).encode()
    return b"APF1" + struct.pack("<I", len(raw)) + raw + body


def _parts(m: Message) -> tuple[dict, bytes]:
    import json
    import struct

    data = encode(m)
    (hlen,) = struct.unpack("<I", data[4:8])
    return json.loads(data[8 : 8 + hlen]), data[8 + hlen :]


def test_the_encoding_is_canonical_so_no_other_bytes_decode():
    m = _msg(a=np.arange(3, dtype=np.int64), b=np.ones(2, np.float32))
    header, body = _parts(m)
    assert decode(_reframed(header, body)).arrays["b"].tolist() == [1.0, 1.0]  # the helper itself is faithful
    data = encode(m)
    hlen = int.from_bytes(data[4:8], "little")
    spaced = data[8 : 8 + hlen].replace(b", ", b",\t")
    respaced = b"APF1" + len(spaced).to_bytes(4, "little") + spaced + data[8 + hlen :]
    bad = {
        "whitespace": respaced,
        "trailing bytes": data + b"\x00",
        "a gap before an array": _reframed(
            {**header, "arrays": [header["arrays"][0], {**header["arrays"][1], "offset": 25}]}, body + b"\x00"
        ),
        "an array named twice": _reframed(
            {**header, "arrays": [header["arrays"][0], {**header["arrays"][0], "offset": 24}]}, body[:24] * 2
        ),
    }
    for why, raw in bad.items():
        with pytest.raises(ProtocolError):
            decode(raw)
            pytest.fail(why)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_except_with_protocol_error(data):
    with contextlib.suppress(ProtocolError):
        decode(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255))
def test_mutated_messages_never_crash_except_with_protocol_error(pos, byte):
    data = bytearray(encode(_msg(act=np.ones((3, 2), np.float32))))
    data[pos % len(data)] = byte
    with contextlib.suppress(ProtocolError):
        decode(bytes(data))


SPECS = {"idx": ArraySpec((None,), ("int64",), index_bound=10), "act": ArraySpec((None, 3))}


def _check(m, **kw):
    args = dict(kind="train", run_id="run1", round=3, sender="active", receiver="passive1", arrays=SPECS)
    args.update(kw)
    return validate(m, **args)


def test_validation_accepts_a_good_message():
    _check(_msg(idx=np.arange(4, dtype=np.int64), act=np.zeros((4, 3), np.float32)))


def _one_value(v: float) -> np.ndarray:
    """Finite values of both signs, and ``v`` in one place."""
    a = np.linspace(-3e38, 3e38, 12, dtype=np.float32).reshape(4, 3)
    a[2, 1] = v
    return a


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: setattr(m, "round", 2), "round"),
        (lambda m: setattr(m, "run_id", "other"), "run id"),
        (lambda m: setattr(m, "sender", "mallory"), "addressed"),
        (lambda m: setattr(m, "kind", "evaluate"), "kind"),
        (lambda m: setattr(m, "schema_version", 99), "schema"),
        (lambda m: m.arrays.__setitem__("act", np.zeros((4, 5), np.float32)), "shape"),
        (lambda m: m.arrays.__setitem__("act", np.zeros((4, 3), np.float64)), "dtype"),
        (lambda m: m.arrays.__setitem__("act", np.full((4, 3), np.nan, np.float32)), "NaN"),
        (lambda m: m.arrays.__setitem__("act", _one_value(np.nan)), "NaN"),
        (lambda m: m.arrays.__setitem__("act", _one_value(np.inf)), "infinite"),
        (lambda m: m.arrays.__setitem__("act", _one_value(-np.inf)), "infinite"),
        (lambda m: m.arrays.__setitem__("act", torch.from_numpy(_one_value(np.nan))), "NaN"),
        (lambda m: m.arrays.__setitem__("idx", np.array([0, 10], np.int64)), "indices"),
        (lambda m: m.arrays.__setitem__("extra", np.zeros(1, np.float32)), "unexpected"),
        (lambda m: m.arrays.pop("act"), "missing"),
    ],
)
def test_validation_refuses_bad_messages(mutate, match):
    m = _msg(idx=np.arange(4, dtype=np.int64), act=np.zeros((4, 3), np.float32))
    mutate(m)
    with pytest.raises(ProtocolError, match=match):
        _check(m)


def test_deferred_value_checks_are_read_back_together_and_name_each_failing_message():
    """Checks that need the device (here a bfloat16 tensor, which numpy cannot view) wait in ``deferred``; one
    read-back then names the first problem of each failing message and passes the good ones."""
    from protocols.validation import first_failures

    specs = {"idx": SPECS["idx"], "act": ArraySpec((None, 3), ("bfloat16",))}
    good = torch.zeros((4, 3), dtype=torch.bfloat16)
    bad = good.clone()
    bad[1, 2] = float("nan")
    deferred = {"p1": [], "p2": []}
    for name, act in (("p1", good), ("p2", bad)):
        m = _msg(idx=np.arange(4, dtype=np.int64), act=act)
        assert _check(m, arrays=specs, deferred=deferred[name]) is m  # nothing read back yet
    assert [len(v) for v in deferred.values()] == [1, 1]
    failures = first_failures(deferred)
    assert list(failures) == ["p2"] and "NaN" in failures["p2"]
    with pytest.raises(ProtocolError, match="NaN"):  # without ``deferred`` the same check raises at once
        _check(_msg(idx=np.arange(4, dtype=np.int64), act=bad), arrays=specs)
    # a host check still raises at once, deferred or not
    with pytest.raises(ProtocolError, match="indices"):
        _check(_msg(idx=np.array([0, 10], np.int64), act=good[:2]), arrays=specs, deferred=[])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_device_value_checks_find_every_non_finite_value_and_pass_huge_finite_ones(monkeypatch, dtype):
    """The device form of the value checks (one reduction per array, read back later), forced onto CPU tensors:
    NaN, +inf, -inf and +inf with -inf are refused; the largest finite values of the dtype, summed over many
    rows, still pass; an index out of bounds is refused."""
    import protocols.validation as validation

    host_view = validation._host_view
    monkeypatch.setattr(validation, "_host_view", lambda a, d: None if isinstance(a, torch.Tensor) else host_view(a, d))
    specs = {"idx": SPECS["idx"], "act": ArraySpec((None, 3), ("float16", "bfloat16", "float32", "float64"))}
    huge = torch.full((4096, 3), torch.finfo(dtype).max, dtype=dtype)
    huge[::2] *= -1 if dtype == torch.float64 else 1  # float64 sums of +max alone would overflow
    idx = np.arange(4, dtype=np.int64)
    assert _check(_msg(idx=np.arange(4096, dtype=np.int64) % 10, act=huge), arrays=specs) is not None
    for bad in (float("nan"), float("inf"), float("-inf"), (float("inf"), float("-inf"))):
        act = torch.ones((4, 3), dtype=dtype)
        act[0, 0], act[3, 2] = bad if isinstance(bad, tuple) else (bad, 1.0)
        with pytest.raises(ProtocolError, match="NaN or infinite"):
            _check(_msg(idx=idx, act=act), arrays=specs)
    with pytest.raises(ProtocolError, match="outside"):
        _check(_msg(idx=torch.tensor([0, 10]), act=torch.ones((2, 3), dtype=dtype)), arrays=specs)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 33, 4099])
def test_host_value_checks_find_every_non_finite_value_and_pass_huge_finite_ones(dtype, n):
    """The host form of the value checks (a sum of squares first, the exact reading when it overflows): NaN, +inf
    and -inf anywhere, SIMD tails included, are refused as numpy arrays and as CPU tensors; the largest finite
    values pass; a negative index (read as unsigned) or one at the bound is refused."""
    specs = {"idx": SPECS["idx"], "act": ArraySpec((None, 1), ("float16", "float32", "float64"))}
    idx = np.arange(n, dtype=np.int64) % 10
    huge = np.full((n, 1), np.finfo(dtype).max, dtype=dtype)
    huge[::2] *= -1
    for ok in (huge, np.zeros((n, 1), dtype), torch.from_numpy(huge)):
        assert _check(_msg(idx=idx, act=ok), arrays=specs) is not None
    for bad in (np.nan, np.inf, -np.inf):
        for pos in {0, n // 2, n - 1}:
            for big in (False, True):  # small values: the sum of squares sees it; huge ones: the exact reading
                act = (huge if big else np.ones((n, 1), dtype)).copy()
                act[pos, 0] = bad
                for a in (act, torch.from_numpy(act)):
                    with pytest.raises(ProtocolError, match="NaN or infinite"):
                        _check(_msg(idx=idx, act=a), arrays=specs)
    act = np.ones((2, 1), dtype)
    for bad_idx in ([0, -1], [-(2**63), 0], [0, 10]):
        for i in (np.array(bad_idx, np.int64), torch.tensor(bad_idx)):
            with pytest.raises(ProtocolError, match="outside"):
                _check(_msg(idx=i, act=act), arrays=specs)


def test_size_limit():
    with pytest.raises(ProtocolError, match="limit"):
        _check(_msg(idx=np.arange(4, dtype=np.int64), act=np.zeros((4, 3), np.float32)), max_bytes=10)
