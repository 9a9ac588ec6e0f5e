"""The protocol's single error type: every malformed or unexpected message raises it, nothing else."""


class ProtocolError(Exception):
    """A message that cannot be decoded, or fails validation against what was requested."""
