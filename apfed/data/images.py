"""Full image sets from a user-given directory (never downloaded): MNIST, Fashion-MNIST (IDX), CIFAR-10/100."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from apfed.catalog import IMAGE_SETS
from apfed.data.views import CONV_MIN_ROWS, MultiViewDataset, image_strips
from apfed.errors import DataError


def _open(path: Path):
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return gzip.open(p, "rb") if p.suffix == ".gz" else p.open("rb")
    raise DataError(f"missing file {path.name}[.gz] in {path.parent}")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format) of unsigned bytes."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path.name}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path.name}: header says shape {shape} but the file holds {body.size} values")
    return body.reshape(shape)


_CIFAR_CLASSES = {  # what a CIFAR python batch (a dict of numpy arrays and lists) may load, nothing more
    (m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing CIFAR batch {path}")

    class _NoCode(pickle.Unpickler):  # refuse every class and function a plain batch does not use
        def find_class(self, module, name):
            if (module, name) in _CIFAR_CLASSES:
                return super().find_class(module, name)
            raise DataError(f"{path.name}: unexpected object {module}.{name} in a CIFAR batch")

    with path.open("rb") as f:
        try:
            d = _NoCode(f, encoding="bytes").load()
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{path.name}: not a CIFAR python batch ({e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path.name}: not a CIFAR python batch (a {type(d).__name__}, not a dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise DataError(f"{path.name}: a CIFAR batch needs 'data' and {label_key!r} (has {', '.join(map(str, d))})")
    try:
        images = np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[label_key], np.int64).reshape(-1)
    except (ValueError, TypeError):
        raise DataError(f"{path.name}: 'data' must hold rows of 3 x 32 x 32 bytes and {label_key!r} integers") from None
    return images, _same_count(path, images, labels)


def _same_count(path: Path, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if len(images) != len(labels):
        raise DataError(f"{path.name}: {len(images)} images but {len(labels)} labels")
    return labels


def _idx_pair(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(root / f"{split}-images-idx3-ubyte")
    labels = read_idx(root / f"{split}-labels-idx1-ubyte")
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{split}-images/-labels in {root}: expected (n, rows, cols) images and (n,) labels")
    return images, _same_count(root / f"{split}-labels-idx1-ubyte", images, labels.astype(np.int64))


def load_image_dir(name: str, root: str | Path, n_views: int = 2) -> MultiViewDataset:
    """Load a standard image set from ``root`` and cut it into strips; its own train/test split is kept."""
    root = Path(root)
    if name not in IMAGE_SETS:
        raise DataError(f"unknown image set {name!r}; choose one of {', '.join(IMAGE_SETS)}")
    if not root.is_dir():
        raise DataError(f"image directory not found: {root}")
    if name in ("mnist", "fashion-mnist"):
        parts = [_idx_pair(root, s) for s in ("train", "t10k")]
        classes = [str(i) for i in range(10)]
    elif name == "cifar10":
        base = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        train = [_cifar_batch(base / f"data_batch_{i}", "labels") for i in range(1, 6)]
        parts = [
            (np.concatenate([a for a, _ in train]), np.concatenate([b for _, b in train])),
            _cifar_batch(base / "test_batch", "labels"),
        ]
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    else:
        base = root / "cifar-100-python" if (root / "cifar-100-python").is_dir() else root
        parts = [_cifar_batch(base / "train", "fine_labels"), _cifar_batch(base / "test", "fine_labels")]
        classes = [str(i) for i in range(100)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    n_train = len(parts[0][0])
    return MultiViewDataset(
        name=name,
        views=image_strips(images, n_views, 255.0, min_rows=CONV_MIN_ROWS),
        labels=labels,
        ids=np.arange(len(labels)).astype(str),
        class_names=classes,
        train_idx=np.arange(n_train),
        test_idx=np.arange(n_train, len(labels)),
    )
