"""Typed messages between the active party and the passives. Arrays are numpy arrays on the wire; the
in-process transport may carry framework tensors unchanged (anything with shape, dtype and .numpy())."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

# Requests (active -> passive) and the replies they expect.
HELLO, SETUP, ALIGN, TRAIN, EVALUATE, FINISH = "hello", "setup", "align", "train", "evaluate", "finish"
RESUME = "resume"  # roll back to the passive's own checkpoint of a round, to continue an interrupted run
REPLY, ERROR = "reply", "error"
KINDS = (HELLO, SETUP, ALIGN, TRAIN, EVALUATE, FINISH, RESUME, REPLY, ERROR)

ConfigValue = int | float | str | bool | list


@dataclass
class Message:
    """One message: a header (kind, schema version, run id, round, sender, receiver), named arrays and a
    small config of scalars. Raw features and labels never go in a message."""

    kind: str
    run_id: str
    round: int
    sender: str
    receiver: str
    arrays: dict[str, Any] = field(default_factory=dict)
    config: dict[str, ConfigValue] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def reply(self, kind: str = REPLY, arrays: dict | None = None, config: dict | None = None) -> Message:
        """A reply addressed back to this message's sender, in the same run and round."""
        return Message(kind, self.run_id, self.round, self.receiver, self.sender, arrays or {}, config or {})

    def header(self) -> dict:
        """The routing fields every encoding carries: schema version, kind, run id, round, sender, receiver."""
        return {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "run_id": self.run_id,
            "round": self.round,
            "sender": self.sender,
            "receiver": self.receiver,
        }

    def nbytes(self) -> int:
        """The arrays' payload size (numpy arrays and torch tensors both have ``nbytes``: elements × item size)."""
        return sum(a.nbytes for a in self.arrays.values())


_DTYPE_NAMES: dict = {}


def dtype_name(a) -> str:
    """'float32', 'int64', ... for numpy arrays and torch tensors alike."""
    d = a.dtype
    name = _DTYPE_NAMES.get(d)
    if name is None:  # str() of a torch dtype is slow enough to matter per array per message
        name = _DTYPE_NAMES[d] = str(d).replace("torch.", "")
    return name


def to_numpy(a) -> np.ndarray:
    """A numpy view or copy of an array-like (numpy array or CPU/GPU tensor)."""
    if isinstance(a, np.ndarray):
        return a
    return a.detach().cpu().numpy()
