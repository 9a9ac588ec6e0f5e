"""Flower transport: apfed messages as Flower RecordDicts, exchanged through a ServerApp's Grid.

Only this module imports flwr (lazily), so the rest of the protocol and the core run without it."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from protocols.errors import ProtocolError
from protocols.flower_retry import shorten_object_retry
from protocols.messages import HELLO, KINDS, TRAIN, Message, to_numpy

MESSAGE_TYPE = "train.apfed"  # one ClientApp handler; the apfed kind travels in the header
ABSENT = "absent since it missed a round's deadline"
# a pull of a reply caught mid-upload waits for Flower's retries (1 s, ±20 %, then doubling; the first one 0.05 s in a
# deployment, protocols/flower_retry.py); a normal one takes ms
HELD_PULL_S = 0.5
_abandoned = threading.Event()  # set: every wait of this process's transports ends at its next poll


class Abandoned(ProtocolError):
    """A wait ended because the process is leaving (``ends_waits_on_exit``): nothing to report."""


@contextmanager
def ends_waits_on_exit() -> Iterator[None]:
    """Should the block leave by an exception (Ctrl-C, SIGTERM, an error), every wait of this process's transports
    then ends at its next poll (at most 0.2 s) with ``Abandoned``. A simulation's ServerApp runs in a thread of its
    own that the process waits for at exit: without this, it would wait out its timeouts for passives that are
    gone."""
    _abandoned.clear()
    try:
        yield
    except BaseException:
        _abandoned.set()
        raise


def _wait(seconds: float) -> None:
    """Sleep between polls (at most ``max_poll``, 0.2 s), then an ``Abandoned`` error if the waits are abandoned
    (``ends_waits_on_exit``)."""
    time.sleep(seconds)
    if _abandoned.is_set():
        raise Abandoned("stopped: the process that runs this ServerApp is exiting")


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


@dataclass
class _Held:
    """A request held back by ``FlowerTransport.submit``: the nodes' parts not yet pushed, and the ids of those
    pushed early."""

    requests: dict[str, Message]
    tolerant: bool
    ids: list[str] = field(default_factory=list)
    first_push: float | None = None


class FlowerTransport:
    """Push one request per passive through the Grid, then poll for the replies (no fixed sleeps).

    The poll interval starts at ``poll`` and backs off to ``max_poll``: a tight loop of gRPC calls would take
    CPU from the passives' compute when everything shares one host (loopback deployment, simulation).

    ``queue_per_node``: a SuperNode handles its messages one at a time, in order, so a deployment may queue a
    node's next request before the previous reply (pipelining). The simulation engine may run two messages for
    one node at once on different actors, so there (False, unless it has a single actor) a request submitted while
    another is unanswered is held back, and each node's part of it is pushed as soon as that node has answered
    everything sent to it before (or, at the latest, when the request is collected): the same order per node,
    never two messages of one node in flight, and a node that answered early computes the next round while the
    others finish theirs and the active party steps. A held request with a round deadline waits to be collected.

    ``round_timeout``: training rounds wait that long for each passive, then go on without the late ones. A
    training request lives in the SuperLink only that long (Flower's TTL), so a passive that comes back is never
    handed a round already closed without it. A passive that missed a deadline is *absent*: later rounds neither
    wait for it nor queue more work for it while one of its requests is still alive; once that one expires the
    next round's request goes out as a probe, again without a wait. Its first reply, even to a closed round,
    makes it present again, and the next round waits for it. So a passive that is gone costs one deadline, not
    one per round, and one that comes back is taken up within about a deadline. A round in which no passive is
    present waits for the absent ones as before: training never races on alone past a passive that is only slow.

    ``pull_each`` (deployment): each reply is pulled by a call of its own, in a thread of its own. A SuperNode
    registers its reply in the SuperLink before it uploads the reply's contents, and the Grid's pull of a reply
    whose contents are not all there retries until Flower's object-push session expires (180 s). One call for
    every reply would hold the others' replies that long should one node die mid-upload: each round would wait
    180 s and every other passive's requests would expire meanwhile. Apart, only that node's reply waits, and
    the round ends at its deadline without it. A pull that lands while a node is still uploading its reply waits
    for Flower's first retry, 1 s later, here 0.05 s (``protocols.flower_retry``); ``held`` lists how long each pull
    that took 0.5 s or more took (the run's ``pulls_held``; a stuck one's, once it ends, too)."""

    release_per_node = True  # False: a held request waits whole until collected (benchmarks/simulate_hold_pairs.py)

    def __init__(
        self,
        grid,
        nodes: dict[str, int],
        timeout: float = 600.0,
        poll: float = 0.005,
        max_poll: float = 0.2,
        queue_per_node: bool = True,
        round_timeout: float | None = None,
        pull_each: bool = False,
    ):
        self.grid, self.nodes, self.timeout, self.poll, self.max_poll = grid, dict(nodes), timeout, poll, max_poll
        self.queue_per_node = queue_per_node
        self.round_timeout = round_timeout
        self.pull_each = pull_each
        if pull_each:  # the Grid's pull of a reply caught mid-upload: Flower's first retry 0.05 s later, not 1 s
            shorten_object_retry(sys.modules[type(grid).__module__])
        self._pulls: dict[str, Future] = {}  # pull_each: message id -> its pull in flight
        self.held: list[float] = []  # pull_each: the seconds of each pull that Flower held (HELD_PULL_S or more)
        self.errors: dict[str, str] = {}  # why a node left out of a tolerant exchange failed, by node name
        self.absent: dict[str, dict[str, float]] = {}  # node -> its requests alive in the SuperLink: id -> expiry
        self._to: dict[str, str] = {}  # message id -> the node it was sent to, while it may still be answered
        self._held: list[_Held] = []  # requests held back (not queue_per_node), oldest first
        self._in_flight: dict[str, int] = {}  # node -> its messages pushed and not yet answered
        self.unanswered = 0
        self.messages = 0

    def _push(self, requests: dict[str, Message], tolerant: bool = False) -> tuple[list[str], dict[str, str]]:
        """Push ``requests``; return their message ids and, by node, why a request was not sent (absent)."""
        from flwr.app import Message as FlowerMessage

        skipped = {}
        if tolerant:
            now = time.monotonic()
            for n in [n for n in requests if n in self.absent]:
                for i in [i for i, until in self.absent[n].items() if until <= now]:  # expired in the SuperLink
                    del self.absent[n][i]
                    self._to.pop(i, None)
                if self.absent[n]:
                    skipped[n] = ABSENT + "; no new request while its last one may still be answered"
            requests = {n: m for n, m in requests.items() if n not in skipped}
        ttl = self.round_timeout if tolerant else None
        out = {
            n: FlowerMessage(to_recorddict(m), self.nodes[n], MESSAGE_TYPE, ttl=ttl, group_id=str(m.round))
            for n, m in requests.items()
        }
        ids = [i for i in (self.grid.push_messages(list(out.values())) if out else []) if i]
        sent = set(ids)
        for n, m in out.items():
            if m.metadata.message_id in sent:
                self._to[m.metadata.message_id] = n
                self._in_flight[n] = self._in_flight.get(n, 0) + 1
        return ids, skipped

    def submit(self, requests: dict[str, Message]) -> tuple:
        self.unanswered += 1  # submitted and not yet collected, pushed or held
        # training rounds have the round deadline (a late passive is left out); everything else the long one
        tolerant = self.round_timeout is not None and all(m.kind == TRAIN for m in requests.values())
        if self.unanswered > 1 and not self.queue_per_node:
            held = _Held(dict(requests), tolerant)
            self._held.append(held)
            return held, tolerant, time.monotonic()
        return self._push(requests, tolerant), tolerant, time.monotonic()

    def collect(self, ticket: tuple) -> dict[str, Message]:
        sent, tolerant, t_submit = ticket
        if isinstance(sent, _Held):  # held back: the nodes' parts not pushed early are pushed now
            self._held.remove(sent)
            ids, skipped = self._push(sent.requests, tolerant)
            t_submit = sent.first_push or time.monotonic()
            sent = sent.ids + ids, skipped
        ids, skipped = sent
        try:
            return self._pull(ids, tolerant, t_submit)
        finally:
            self.errors.update(skipped)
            self.unanswered -= 1

    def _answered(self, node: str) -> None:
        """``node`` answered a message: once it has nothing else in flight, push its part of the oldest held
        request that has one (not one with a round deadline: its absent-node rules work on whole requests)."""
        left = self._in_flight.get(node, 0) - 1
        self._in_flight[node] = max(0, left)
        if left > 0 or not self.release_per_node:
            return
        for held in self._held:
            if node in held.requests:
                if not held.tolerant:
                    ids, _ = self._push({node: held.requests.pop(node)})
                    held.ids += ids
                    held.first_push = held.first_push or time.monotonic()
                return

    def _pull(self, ids: list[str], tolerant: bool = False, t_submit: float | None = None) -> dict[str, Message]:
        """The replies to ``ids``. ``tolerant``: a node's error reply, or no reply within the round deadline
        (counted from submission), leaves that node out instead of failing the exchange; an absent node's reply
        is taken if it is there by the time the others' are, and earlier requests of absent nodes are polled
        for a sign of life."""
        replies: dict[str, Message] = {}
        limit = self.round_timeout if tolerant else self.timeout
        t_submit = t_submit or time.monotonic()
        pending, deadline, wait = set(ids), t_submit + limit, self.poll
        unawaited = {i for i in pending if tolerant and self._to.get(i) in self.absent}
        if unawaited == pending:  # no passive present in this round: wait for the absent (they may only be slow)
            unawaited = set()
        now = time.monotonic()
        alive = {i for reqs in self.absent.values() for i, until in reqs.items() if until > now}
        earlier = alive if tolerant else set()
        while True:
            for r in self._pull_replies(list(pending | earlier)):
                i = r.metadata.reply_to_message_id
                name = self._to.pop(i, None) or f"node {r.metadata.src_node_id}"
                late = i in earlier
                earlier.discard(i)
                itself = not r.has_error() or r.metadata.src_node_id == self.nodes.get(name)
                if itself:  # the node answered: present again, the next round waits for it
                    for j in self.absent.pop(name, {}):
                        self._to.pop(j, None)
                        earlier.discard(j)
                elif name in self.absent:  # the SuperLink's word that the request expired: stop polling it
                    self.absent[name].pop(i, None)
                if itself:
                    self._answered(name)
                if late:  # its round was closed without it
                    continue
                pending.discard(i)
                was_unawaited = i in unawaited
                unawaited.discard(i)
                if r.has_error():
                    if tolerant:
                        why = r.error.reason
                        self.errors[name] = f"{ABSENT}, not waited for: {why}" if was_unawaited else why
                        if not itself:  # the SuperLink answered for it (request expired, node offline): absent
                            self.absent.setdefault(name, {})
                        continue
                    raise ProtocolError(f"{name} failed: {r.error.reason}")
                replies[name] = from_recorddict(r.content)
            if not pending - unawaited:
                break
            if time.monotonic() > deadline:
                if tolerant:
                    break
                raise ProtocolError(
                    f"no reply from {len(pending)} passive(s) within {self.timeout:.0f} s (the run config's"
                    " 'timeout'; set-up aligns every ID by PSI, about 0.1 ms per ID on each side and core)"
                )
            _wait(wait)
            wait = min(wait * 1.5, self.max_poll)
        for i in pending:  # late (tolerant only): its node is absent until it answers this or a later request
            name = self._to[i]
            if i in unawaited:
                self.errors[name] = ABSENT + "; not waited for"
            self.absent.setdefault(name, {})[i] = t_submit + limit
        self.messages += 2 * len(ids)
        return replies

    def _pull_replies(self, ids: list[str]) -> list:
        """The replies to ``ids`` that the SuperLink has now. ``pull_each``: one call per reply, each in a daemon
        thread (a stuck one must not keep the process from exiting); the calls started now are waited for at most
        ``max_poll``, and a call still running from an earlier poll is not repeated: what it returns once it ends
        is taken at a later poll for its id, or dropped if its id is no longer asked for (its round closed and its
        request expired). A stuck call can still hold the process's exit until it ends: Flower's pull runs in
        threads of its own that Python waits for."""
        if not self.pull_each:
            return list(self.grid.pull_messages(ids))
        fresh = []
        for i in ids:
            if i not in self._pulls:
                self._pulls[i] = self._start_pull(i)
                fresh.append(self._pulls[i])
        wait_for(fresh, timeout=self.max_poll)  # not a stuck one's: it would add max_poll to every poll
        asked, replies = set(ids), []
        for i in [i for i, f in self._pulls.items() if f.done()]:
            pulled = self._pulls.pop(i)
            if i in asked:
                replies += pulled.result()  # a failed call raises here, as the Grid's own call would
        return replies

    def _start_pull(self, message_id: str) -> Future:
        pulled: Future = Future()

        def pull() -> None:
            t0 = time.monotonic()
            try:
                got, error = list(self.grid.pull_messages([message_id])), None
            except BaseException as e:
                got, error = [], e
            if (took := time.monotonic() - t0) >= HELD_PULL_S:  # listed before the reply is handed over
                self.held.append(took)
            if error is None:
                pulled.set_result(got)
            else:
                pulled.set_exception(error)

        threading.Thread(target=pull, name="apfed-pull", daemon=True).start()
        return pulled

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
        _wait(0.2)
    probe = FlowerTransport(grid, {str(n): n for n in node_ids}, timeout)
    replies = probe.exchange({str(n): Message(HELLO, run_id, 0, "active", "?") for n in node_ids})
    nodes = {}
    for n in node_ids:
        party = replies[str(n)].config.get("party")
        if not isinstance(party, str) or party in nodes:
            raise ProtocolError(f"node {n} did not name a unique passive party (got {party!r})")
        nodes[party] = n
    return nodes
