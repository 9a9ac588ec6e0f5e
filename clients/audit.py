"""A passive party's audit log (node config ``audit-log=PATH``): one JSON line per request it handled, so the
organization can answer afterwards what it sent, to whom and when, without keeping any payload.

Each line has the time (UTC), the party, the run, the active party that asked, the request's kind and round,
what the request asked for (a set-up's method, epochs, loss and DP settings, how many IDs it offered; an
alignment's shared rows; a training or evaluation request's rows), and what the reply carried: each array's
name, shape, dtype and bytes, or the error sent instead. Lines are appended and flushed one by one, so a crash
loses at most the line being written; the file is created owner-only."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import numpy as np

from protocols.messages import ALIGN, ERROR, EVALUATE, SETUP, TRAIN, Message


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            from apfed.errors import ConfigError

            raise ConfigError(f"node config audit-log: directory {self.path.parent} does not exist")

    def record(self, party: str, request: Message, reply: Message) -> None:
        line = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "party": party,
            "run_id": request.run_id,
            "active": request.sender,
            "kind": request.kind,
            "round": request.round,
            **_asked(request),
            "sent": {name: _describe(a) for name, a in reply.arrays.items()},
        }
        if reply.kind == ERROR:
            line["error"] = str(reply.config.get("error", ""))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")


def _asked(msg: Message) -> dict:
    """What a request asked for, in counts and settings (never its arrays' values)."""
    c, a = msg.config, msg.arrays
    if msg.kind == SETUP:
        try:
            cfg = json.loads(str(c.get("train_config", "{}")))
        except ValueError:
            cfg = {}
        keys = ("method", "epochs", "dp_clip", "dp_noise", "payload")
        return {
            "asked": {
                **{k: cfg[k] for k in keys if k in cfg},
                "loss": c.get("loss"),
                "sends_embedding": c.get("sends_embedding"),
                "ids_offered": _rows(a.get("psi")),
            }
        }
    if msg.kind == ALIGN:
        return {"asked": {"shared_rows": _rows(a.get("match")), "training_rows": _rows(a.get("train"))}}
    if msg.kind in (TRAIN, EVALUATE):
        return {"asked": {"rows": _rows(a.get("idx"))}}
    return {}


def _rows(array) -> int | None:
    return None if array is None else (int(array.shape[0]) if len(array.shape) else 1)


def _describe(array) -> dict:
    """Shape, dtype and bytes, read from the array's header (a tensor on a GPU is not copied)."""
    if isinstance(array, np.ndarray):
        return {"shape": list(array.shape), "dtype": array.dtype.name, "bytes": int(array.nbytes)}
    dtype = str(array.dtype).removeprefix("torch.")
    return {"shape": list(array.shape), "dtype": dtype, "bytes": int(array.numel() * array.element_size())}


def read_log(path: str | Path) -> list[dict]:
    """The entries of an audit log; a line that is not one of its JSON objects is an error naming the line."""
    from apfed.errors import DataError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read the audit log {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not an audit log (not UTF-8 text)") from None
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not {"run_id", "kind", "sent"} <= entry.keys():
            raise DataError(f"{path}, line {n}: not an audit log entry (a JSON object with run_id, kind, sent)")
        entries.append(entry)
    return entries


def summarize(entries: list[dict]) -> list[dict]:
    """One row per run, in the order the runs began: who asked, what, when, over how many rows, how many
    requests, the bytes sent per array name, and the errors sent (refusals included)."""
    runs: dict[str, dict] = {}
    for e in entries:
        r = runs.setdefault(
            e["run_id"],
            {"run_id": e["run_id"], "party": e.get("party"), "active": e.get("active"), "method": None},
        )
        r.setdefault("first", e.get("time"))
        r["last"] = e.get("time")
        r["requests"] = r.get("requests", 0) + 1
        asked = e.get("asked") or {}
        if e["kind"] == "setup":
            r.update({k: asked.get(k) for k in ("method", "epochs", "ids_offered")})
            r["dp_noise"] = asked.get("dp_noise") if asked.get("dp_clip") else 0.0
        if e["kind"] == "align":
            r["shared_rows"] = asked.get("shared_rows")
        for name, spec in (e.get("sent") or {}).items():
            r.setdefault("bytes_sent", {})
            r["bytes_sent"][name] = r["bytes_sent"].get(name, 0) + int(spec.get("bytes", 0))
        if "error" in e:
            r.setdefault("errors", []).append(f"{e['kind']} (round {e.get('round')}): {e['error']}")
    return list(runs.values())
