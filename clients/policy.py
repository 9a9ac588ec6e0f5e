"""A passive party's own limits on the runs it joins, from its node config: whatever the active party's run
config asks, the passive refuses a run beyond them, with one line that says what to change.

- ``send-embeddings=false``: its encoder's embeddings never leave it (tvfl and apfed-kd need them; the APFed
  methods send only gradients with respect to what the active party sent).
- ``min-dp-noise=σ``: what it sends carries DP noise with at least this multiplier (the run must set
  ``dp_clip`` and ``dp_noise >= σ``; apfed/privacy.py).
- ``min-rows=N``: it takes part only over at least N shared rows. Checked on the number of IDs the active party
  offers before the PSI answers (a short list probing for a few people gets no answer; padded with made-up IDs it
  still learns what any PSI tells), and on the rows the intersection leaves before any training (a gradient over
  a handful of rows says much about each)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from apfed.config import TrainConfig
from apfed.errors import ConfigError
from protocols.errors import ProtocolError

POLICY_KEYS = ("send-embeddings", "min-dp-noise", "min-rows")


@dataclass(frozen=True)
class PassivePolicy:
    send_embeddings: bool = True
    min_dp_noise: float = 0.0
    min_rows: int = 0

    @classmethod
    def from_node_config(cls, nc: dict) -> PassivePolicy:
        """The limits a node config sets (none by default); a malformed value is a ConfigError naming its key."""
        flag = str(nc.get("send-embeddings", "true")).strip().lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"node config send-embeddings={nc['send-embeddings']!r}: give true or false")
        return cls(flag in ("true", "1", "yes"), _number(nc, "min-dp-noise", float), _number(nc, "min-rows", int))

    @property
    def limits(self) -> bool:
        return self != PassivePolicy()

    def describe(self) -> str:
        """One line for the party's log."""
        parts = [] if self.send_embeddings else ["its embeddings never leave it"]
        if self.min_dp_noise > 0:
            parts.append(f"what it sends carries DP noise >= {self.min_dp_noise:g}")
        if self.min_rows > 0:
            parts.append(f"only over at least {self.min_rows} shared rows")
        return "; ".join(parts) or "none"

    def check_setup(self, cfg: TrainConfig, sends_embedding: bool, offered_ids: int | None = None) -> None:
        """Refuse a run beyond these limits before answering its set-up (the PSI included); ``offered_ids``:
        how many IDs the active party's PSI list holds."""
        if sends_embedding and not self.send_embeddings:
            raise ProtocolError(
                f"will not send its embeddings (node config send-embeddings=false), which {cfg.method} needs: use"
                " apfed-r, apfed-c or apfed-m"
            )
        if self.min_dp_noise > 0 and (cfg.dp_clip <= 0 or cfg.dp_noise < self.min_dp_noise):
            raise ProtocolError(
                f"requires DP noise of at least {self.min_dp_noise:g} on what it sends (node config min-dp-noise);"
                f" this run has dp_clip={cfg.dp_clip:g}, dp_noise={cfg.dp_noise:g}: set both (--dp-clip C"
                f" --dp-noise {self.min_dp_noise:g}, or sets='dp_clip=C,dp_noise={self.min_dp_noise:g}')"
            )
        if offered_ids is not None:
            self.check_rows(offered_ids, "the active party offered")

    def check_rows(self, n: int, what: str = "the intersection leaves") -> None:
        if n < self.min_rows:
            raise ProtocolError(
                f"takes part only over at least {self.min_rows} shared rows (node config min-rows); {what} {n}"
            )


def _number(nc: dict, key: str, kind: type) -> float | int:
    if key not in nc:
        return kind(0)
    try:
        value = kind(str(nc[key]).strip())
    except ValueError:
        value = -1
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"node config {key}={nc[key]!r}: give a number >= 0")
    return value
