"""apfed: vertical federated learning in which the active party ends up with a standalone model."""

from apfed.errors import ApfedError

__version__ = "0.1.0"
__all__ = ["ApfedError", "__version__"]
