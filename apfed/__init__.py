"""apfed: vertical federated learning in which the active party ends up with a standalone model.

The Python API (``apfed.load_dataset``, ``apfed.from_arrays``, ``apfed.from_parties``, ``apfed.train``,
``apfed.compare``, ``apfed.simulate``, ``apfed.StandaloneModel``; see ``apfed.api``) is loaded on first use, so
``import apfed`` does not import torch.
"""

from apfed.errors import ApfedError, ConfigError, DataError

__version__ = "0.1.0"
__all__ = [
    "ApfedError",
    "ConfigError",
    "DataError",
    "StandaloneModel",
    "__version__",
    "compare",
    "from_arrays",
    "from_parties",
    "load_dataset",
    "simulate",
    "train",
]

_API = {"load_dataset", "train", "compare", "simulate"}


def __getattr__(name: str):
    if name in _API:
        from apfed import api

        return getattr(api, name)
    if name in ("from_arrays", "from_parties"):
        from apfed.data import arrays

        return getattr(arrays, name)
    if name == "StandaloneModel":
        from apfed.standalone import StandaloneModel

        return StandaloneModel
    raise AttributeError(f"module 'apfed' has no attribute {name!r}")
