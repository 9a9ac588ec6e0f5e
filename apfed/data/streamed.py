"""A synthetic multi-view set whose rows are computed from their index when asked for, never stored.

Memory stays bounded in the number of samples: a view is a ``StreamedRows`` (the generator's parameters, O(1)),
preprocessing statistics are accumulated chunk by chunk, and a learner reads minibatches through
``DeviceRows``, which generates and normalises just the rows it is given, on the learner's device. What stays
O(samples) is small and inherent: labels, sample ids, the split and the alignment (int16 labels and int32 positions,
see ``apfed.data.views.compact_index``), plus the PSI's arrays during set-up (about 100 bytes per sample more, freed
after alignment).

The signal is known: every view is a noisy linear image of a class centre, ``x = centre[y] @ mix_v + 1.5·ε``,
so each party alone is informative and together they are more so (as ``apfed.bench.synthetic``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from apfed.data.splits import stratified_split
from apfed.data.views import MultiViewDataset, View, compact_labels

CHUNK = 8192  # rows generated at once outside training (statistics, labels): bounds the transient memory
_P = 2**31 - 1  # Park-Miller modulus: products of two residues fit in int64


def _mix(x: torch.Tensor) -> torch.Tensor:
    for _ in range(3):
        x = (x * 48271) % _P
    return x


def _uniform(rows: torch.Tensor, cols: torch.Tensor, salt: int) -> torch.Tensor:
    """Deterministic uniforms in (0, 1) for every (row, col) pair: a counter-based hash of the indices."""
    x = _mix((rows[:, None] % _P) * 16807 % _P + salt % _P + 1)
    x = _mix((x + cols[None, :] * 69621 + 1) % _P)
    return (x.double() + 0.5) / _P


def labels_of(rows: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    return (_mix(rows % _P + 7919 * (seed + 1)) % classes).long()


@dataclass
class StreamedRows:
    """The rows of one tabular view, computed on demand: indexable like a (n, dim) float32 array."""

    n: int
    dim: int
    view: int
    seed: int
    classes: int
    centres: np.ndarray  # (classes, 8)
    mix: np.ndarray  # (8, dim)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def __len__(self) -> int:
        return self.n

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """float32 features of the rows ``idx`` (int64 tensor), on ``idx``'s device."""
        dev = idx.device
        y = labels_of(idx, self.classes, self.seed)
        signal = torch.as_tensor(self.centres, device=dev)[y] @ torch.as_tensor(self.mix, device=dev)
        cols = torch.arange(self.dim, device=dev)
        salt = 1_000_003 * (self.view + 1) + self.seed
        u1, u2 = _uniform(idx, cols, salt), _uniform(idx, cols, salt + 77)
        noise = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)  # Box-Muller
        return (signal + 1.5 * noise).float()

    def __getitem__(self, rows) -> np.ndarray:
        idx = torch.as_tensor(np.arange(self.n)[rows] if isinstance(rows, slice) else np.asarray(rows))
        return self.rows(idx.long()).numpy()

    def moments(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over ``rows``, accumulated in chunks."""
        s = np.zeros(self.dim)
        ss = np.zeros(self.dim)
        for start in range(0, len(rows), CHUNK):
            x = self.rows(torch.as_tensor(rows[start : start + CHUNK]).long()).double().numpy()
            s += x.sum(0)
            ss += (x * x).sum(0)
        mean = s / max(1, len(rows))
        return mean, np.sqrt(np.maximum(ss / max(1, len(rows)) - mean * mean, 0.0))


class DeviceRows:
    """What a learner indexes instead of a resident tensor: ``rows[idx]`` generates and preprocesses the
    minibatch ``idx`` (positions in the party's aligned rows) on ``device``."""

    def __init__(self, source: StreamedRows, aligned: np.ndarray, mean: np.ndarray, std: np.ndarray, device: str):
        self.source = source
        self.aligned = torch.as_tensor(aligned, device=device)  # int32 or int64 positions, widened per minibatch
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device)
        self.shape = (len(aligned), source.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return (self.source.rows(self.aligned[idx].long()) - self.mean) / self.std


def streamed_synthetic(n: int, passives: int, dim: int = 32, classes: int = 10, seed: int = 0) -> MultiViewDataset:
    """``passives + 1`` streamed tabular views of ``n`` samples; labels and ids are materialised (O(n), small)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 8))
    views = [
        View(
            f"v{v}",
            "tabular",
            StreamedRows(n, dim, v, seed, classes, centres, rng.normal(size=(8, dim)) / np.sqrt(8)),
            [f"v{v}_{j}" for j in range(dim)],
        )
        for v in range(passives + 1)
    ]
    y = np.concatenate(
        [
            compact_labels(labels_of(torch.arange(s, min(n, s + CHUNK)), classes, seed).numpy())
            for s in range(0, n, CHUNK)
        ]
    )
    train, test = stratified_split(y, 0.2, seed)
    ids = np.arange(n, dtype=np.int64)  # numeric ids: 8 bytes each (a string id costs 4 per character)
    return MultiViewDataset("synthetic-streamed", views, y, ids, [str(c) for c in range(classes)], train, test)


def device_rows(view: View, rows: np.ndarray, preprocessor, device: str):
    """A learner's input rows: a resident, preprocessed tensor, or (streamed views) a ``DeviceRows``."""
    if isinstance(view.X, StreamedRows):
        return DeviceRows(view.X, rows, preprocessor.mean, preprocessor.std, device)
    return torch.from_numpy(preprocessor(view.X[rows])).to(device)
