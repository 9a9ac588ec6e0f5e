"""What crosses an organization boundary: typed messages, the codec, validation and transports.

This package knows nothing of models or training."""

from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.messages import SCHEMA_VERSION, Message
from protocols.transport import InProcessTransport, Transport
from protocols.validation import ArraySpec, validate

__all__ = [
    "SCHEMA_VERSION",
    "ArraySpec",
    "InProcessTransport",
    "Message",
    "ProtocolError",
    "Transport",
    "decode",
    "encode",
    "validate",
]
