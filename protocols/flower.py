"""Flower transport: apfed messages as Flower RecordDicts, exchanged through a ServerApp's Grid.

Only this module imports flwr (lazily), so the rest of the protocol and the core run without it."""

from __future__ import annotations

import json
import time

import numpy as np

from protocols.errors import ProtocolError
from protocols.messages import HELLO, KINDS, TRAIN, Message, to_numpy

MESSAGE_TYPE = "train.apfed"  # one ClientApp handler; the apfed kind travels in the header


def to_recorddict(msg: Message):
    """An apfed message as a Flower RecordDict: header and config in a ConfigRecord, arrays in an ArrayRecord."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    header = {**msg.header(), "config": json.dumps(msg.config, allow_nan=False)}
    arrays = ArrayRecord({k: Array(np.ascontiguousarray(to_numpy(v))) for k, v in msg.arrays.items()})
    return RecordDict({"apfed_header": ConfigRecord(header), "apfed_arrays": arrays})


def from_recorddict(rd) -> Message:
    """Parse a RecordDict made by ``to_recorddict``; anything else raises ProtocolError."""
    try:
        h = dict(rd["apfed_header"])
        arrays = {k: v.numpy() for k, v in rd["apfed_arrays"].items()}
        config = json.loads(h["config"])
        msg = Message(
            str(h["kind"]),
            str(h["run_id"]),
            int(h["round"]),
            str(h["sender"]),
            str(h["receiver"]),
            arrays,
            config,
            int(h["schema_version"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"malformed Flower message: {e}") from None
    if msg.kind not in KINDS or not isinstance(config, dict):
        raise ProtocolError(f"malformed Flower message: kind {msg.kind!r}")
    return msg


class FlowerTransport:
    """Push one request per passive through the Grid, then poll for the replies (no fixed sleeps).

    The poll interval starts at ``poll`` and backs off to ``max_poll``: a tight loop of gRPC calls would take
    CPU from the passives' compute when everything shares one host (loopback deployment, simulation).

    ``queue_per_node``: a SuperNode handles its messages one at a time, in order, so a deployment may queue a
    node's next request before the previous reply (pipelining). The simulation engine may run two messages for
    one node at once on different actors, so there (False) a request submitted while another is unanswered is
    held back and pushed when it is collected: the same order, without the overlap."""

    def __init__(
        self,
        grid,
        nodes: dict[str, int],
        timeout: float = 600.0,
        poll: float = 0.005,
        max_poll: float = 0.2,
        queue_per_node: bool = True,
        round_timeout: float | None = None,
    ):
        self.grid, self.nodes, self.timeout, self.poll, self.max_poll = grid, dict(nodes), timeout, poll, max_poll
        self.queue_per_node = queue_per_node
        self.round_timeout = round_timeout
        self.errors: dict[str, str] = {}  # why a node left out of a tolerant exchange failed, by node name
        self.unanswered = 0
        self.messages = 0

    def _push(self, requests: dict[str, Message], tolerant: bool = False) -> list[str]:
        """Push ``requests``. A training request under a round deadline lives only that long in the SuperLink
        (Flower's TTL, counted from here like the deadline): a passive that was down, or is behind, is never
        handed a round the active party has already closed without it, and rejoins at the current round."""
        from flwr.app import Message as FlowerMessage

        ttl = self.round_timeout if tolerant else None
        out = [
            FlowerMessage(to_recorddict(m), self.nodes[n], MESSAGE_TYPE, ttl=ttl, group_id=str(m.round))
            for n, m in requests.items()
        ]
        return list(self.grid.push_messages(out))

    def submit(self, requests: dict[str, Message]) -> tuple:
        held = self.unanswered > 0 and not self.queue_per_node
        self.unanswered += 1  # submitted and not yet collected, pushed or held
        # training rounds have the round deadline (a late passive is left out); everything else the long one
        tolerant = self.round_timeout is not None and all(m.kind == TRAIN for m in requests.values())
        return (requests if held else self._push(requests, tolerant)), tolerant, time.monotonic()

    def collect(self, ticket: tuple) -> dict[str, Message]:
        sent, tolerant, t_submit = ticket
        ids = self._push(sent, tolerant) if isinstance(sent, dict) else sent
        try:
            return self._pull(ids, tolerant, time.monotonic() if isinstance(sent, dict) else t_submit)
        finally:
            self.unanswered -= 1

    def _pull(self, ids: list[str], tolerant: bool = False, t_submit: float | None = None) -> dict[str, Message]:
        """The replies to ``ids``. ``tolerant``: a node's error reply, or no reply within the round deadline
        (counted from submission), leaves that node out instead of failing the exchange."""
        by_node = {v: k for k, v in self.nodes.items()}
        replies: dict[str, Message] = {}
        limit = self.round_timeout if tolerant else self.timeout
        pending, deadline, wait = set(ids), (t_submit or time.monotonic()) + limit, self.poll
        while pending:
            for r in self.grid.pull_messages(list(pending)):
                pending.discard(r.metadata.reply_to_message_id)
                name = by_node.get(r.metadata.src_node_id, f"node {r.metadata.src_node_id}")
                if r.has_error():
                    if tolerant:
                        self.errors[name] = r.error.reason
                        continue
                    raise ProtocolError(f"{name} failed: {r.error.reason}")
                replies[name] = from_recorddict(r.content)
            if pending:
                if time.monotonic() > deadline:
                    if tolerant:
                        break
                    raise ProtocolError(
                        f"no reply from {len(pending)} passive(s) within {self.timeout:.0f} s (the run config's"
                        " 'timeout'; set-up aligns every ID by PSI, about 0.1 ms per ID on each side and core)"
                    )
                time.sleep(wait)
                wait = min(wait * 1.5, self.max_poll)
        self.messages += 2 * len(ids)
        return replies

    def exchange(self, requests: dict[str, Message]) -> dict[str, Message]:
        return self.collect(self.submit(requests))

    def close(self) -> None:
        pass


def discover(grid, run_id: str, expected: int, timeout: float = 120.0) -> dict[str, int]:
    """Ask every connected node which passive party it is; wait until ``expected`` nodes are connected."""
    deadline = time.monotonic() + timeout
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) >= expected:
            break
        if time.monotonic() > deadline:
            raise ProtocolError(f"only {len(node_ids)} of {expected} passive nodes connected within {timeout:.0f} s")
        time.sleep(0.2)
    probe = FlowerTransport(grid, {str(n): n for n in node_ids}, timeout)
    replies = probe.exchange({str(n): Message(HELLO, run_id, 0, "active", "?") for n in node_ids})
    nodes = {}
    for n in node_ids:
        party = replies[str(n)].config.get("party")
        if not isinstance(party, str) or party in nodes:
            raise ProtocolError(f"node {n} did not name a unique passive party (got {party!r})")
        nodes[party] = n
    return nodes
