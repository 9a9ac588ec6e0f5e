"""Seeded, stratified train/test splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from apfed.errors import DataError


def stratified_split(labels: np.ndarray, test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified split, exactly ``train_test_split(range(N), stratify=y, random_state=seed)``."""
    counts = np.bincount(labels)
    if (counts[counts > 0] < 2).any():
        raise DataError("every class needs at least 2 labelled rows for a stratified split")
    train, test = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed)
    return np.asarray(train), np.asarray(test)
