"""Transports move one request to each passive and bring back its reply. The in-process transport calls
the passive handlers directly; it can also push every message through the byte codec."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from protocols.codec import decode, encode
from protocols.messages import TRAIN, Message

Handler = Callable[[Message], Message]


class Transport(Protocol):
    """What the active party's training loop needs from a transport.

    ``submit`` queues one request per passive and returns at once; ``collect`` waits for those replies. Each
    passive handles its requests in submission order, so a caller may keep one request queued behind another
    (pipelining). ``exchange`` is ``collect(submit(...))``."""

    def submit(self, requests: dict[str, Message]) -> object: ...

    def collect(self, ticket: object) -> dict[str, Message]: ...

    def exchange(self, requests: dict[str, Message]) -> dict[str, Message]:
        """Deliver one request per passive name and return each passive's reply."""
        ...

    def close(self) -> None: ...


class InProcessTransport:
    """Passives live in this process. ``serialize=True`` sends every message through the codec, and
    ``record`` (a list) receives the encoded bytes of every message in both directions.

    ``round_timeout`` (seconds): a reply to a training round that took longer is dropped, as a deadline missed over
    a network would be (the passive has still handled the request). As over Flower, set-up (the PSI over every ID,
    which takes seconds per 10,000 IDs) and evaluation have no round deadline. A handler that returns None sends
    no reply."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        serialize: bool = False,
        record: list | None = None,
        round_timeout: float | None = None,
    ):
        self.handlers = handlers
        self.serialize = serialize or record is not None
        self.record = record
        self.round_timeout = round_timeout
        self.messages = 0
        self.bytes = 0

    def _wire(self, msg: Message) -> Message:
        self.messages += 1
        self.bytes += msg.nbytes()
        if not self.serialize:
            return msg
        data = encode(msg)
        if self.record is not None:
            self.record.append(data)
        return decode(data)

    def submit(self, requests: dict[str, Message]) -> dict[str, Message]:
        # The passives live here: handling at submission keeps the same per-passive order as a real queue.
        replies = {}
        deadline = self.round_timeout if all(m.kind == TRAIN for m in requests.values()) else None
        for name, req in requests.items():
            t0 = time.perf_counter()
            reply = self.handlers[name](self._wire(req))
            late = deadline is not None and time.perf_counter() - t0 > deadline
            if reply is not None and not late:
                replies[name] = self._wire(reply)
        return replies

    def collect(self, ticket: dict[str, Message]) -> dict[str, Message]:
        return ticket

    def exchange(self, requests: dict[str, Message]) -> dict[str, Message]:
        return self.collect(self.submit(requests))

    def close(self) -> None:
        pass
