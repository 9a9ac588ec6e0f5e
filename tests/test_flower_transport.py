"""FlowerTransport's round deadline against a scripted Grid: TTLs, and a passive that goes away and comes back.

A Flower Message needs a running ServerApp, so ``flwr.app.Message`` is replaced by a record of its arguments; the
Grid answers as a SuperLink does (a reply per live request of a node that is up, an error from the SuperLink for
an expired one)."""

import contextlib
import time
from types import SimpleNamespace

import pytest

flwr = pytest.importorskip("flwr")

from protocols.errors import ProtocolError  # noqa: E402
from protocols.flower import FlowerTransport, to_recorddict  # noqa: E402
from protocols.messages import EVALUATE, REPLY, TRAIN, Message  # noqa: E402

# a round that does not wait for a passive must end within half of it: 0.3 s left 0.15 s, and a fresh CI clone on a
# loaded host took 0.27 s for such a round (2026-12-05); the waits these tests make are one deadline each
DEADLINE = 1.0


class RecordedMessage:
    def __init__(self, content, dst_node_id, message_type, *, ttl=None, group_id=None):
        self.content, self.dst_node_id, self.ttl = content, dst_node_id, ttl
        self.metadata = SimpleNamespace(message_id="")


class ScriptedGrid:
    """Nodes 1 and 2 answer at once while ``up``; a request expires ``ttl`` seconds after it was pushed."""

    def __init__(self):
        self.up = {1: True, 2: True}
        self.delay = {1: 0.0, 2: 0.0}  # seconds a node takes to answer a request
        self.stalled: dict[int, float] = {}  # node -> seconds a pull of its reply hangs (it died mid-upload)
        self.uploading: dict[int, float] = {}  # node -> seconds a pull of its reply waits for it (Flower's retry)
        self.pushed: list[RecordedMessage] = []
        self.born: dict[str, float] = {}
        self.delivered: set[str] = set()

    def push_messages(self, msgs):
        ids = []
        for m in msgs:
            m.metadata.message_id = f"m{len(self.pushed)}"
            self.pushed.append(m)
            self.born[m.metadata.message_id] = time.monotonic()
            ids.append(m.metadata.message_id)
        return ids

    def sent_to(self, node: int) -> int:
        return sum(m.dst_node_id == node for m in self.pushed)

    def pull_messages(self, ids):
        # as Flower's Grid does: a reply whose contents never finished uploading holds the whole call, retried
        # until the object-push session expires, and then comes back as an error from the SuperLink
        stuck = [i for i in ids if self.pushed[int(i[1:])].dst_node_id in self.stalled and i not in self.delivered]
        if stuck:
            time.sleep(max(self.stalled[self.pushed[int(i[1:])].dst_node_id] for i in stuck))
        out = []
        for i in stuck:
            out.append(_Reply(i, 0, error="Reply message objects are unavailable."))
            self.delivered.add(i)
        for i in ids:
            m = self.pushed[int(i[1:])]
            if i in self.delivered:
                continue
            expired = m.ttl is not None and time.monotonic() > self.born[i] + m.ttl
            if expired:
                out.append(_Reply(i, 0, error="Error: Message Unavailable - it may have expired due to its TTL"))
            elif self.up[m.dst_node_id]:
                if time.monotonic() < self.born[i] + self.delay[m.dst_node_id]:
                    continue
                time.sleep(self.uploading.get(m.dst_node_id, 0.0))
                out.append(_Reply(i, m.dst_node_id))
            else:
                continue
            self.delivered.add(i)
        return out


class _Reply:
    """What a Flower reply exposes; like Flower's, reading ``error`` of a reply without one raises."""

    def __init__(self, i: str, src: int, error: str | None = None):
        self.metadata = SimpleNamespace(reply_to_message_id=i, src_node_id=src)
        self.content = to_recorddict(Message(REPLY, "run", 0, f"p{src}", "active"))
        self._error = error

    def has_error(self) -> bool:
        return self._error is not None

    @property
    def error(self):
        if self._error is None:
            raise ValueError("Message error is None")
        return SimpleNamespace(reason=self._error)


@pytest.fixture
def grid(monkeypatch):
    import flwr.app

    monkeypatch.setattr(flwr.app, "Message", RecordedMessage)
    return ScriptedGrid()


def _round(t: FlowerTransport, r: int, kind: str = TRAIN) -> tuple[set[str], float]:
    t0 = time.monotonic()
    replies = t.exchange({n: Message(kind, "run", r, "active", n) for n in ("p1", "p2")})
    return set(replies), time.monotonic() - t0


@pytest.mark.parametrize("queue_per_node", [True, False])
def test_training_requests_under_a_round_deadline_expire_with_it_in_the_superlink(grid, queue_per_node):
    """A training request lives in the SuperLink only as long as the round deadline (Flower's TTL); set-up and
    evaluation requests, and training without a deadline, keep Flower's default lifetime (None here). Without
    per-node queueing (simulation) the second request is held back and pushed when collected: it gets it too."""

    def ttls(round_timeout, kind):
        grid.pushed.clear()
        grid.up = {1: False, 2: False}
        t = FlowerTransport(grid, {"p": 1}, timeout=0.01, round_timeout=round_timeout, queue_per_node=queue_per_node)
        tickets = [t.submit({"p": Message(kind, "run", r, "active", "p")}) for r in (1, 2)]
        for ticket in tickets:  # nobody answers
            with contextlib.suppress(ProtocolError):
                t.collect(ticket)
        return [m.ttl for m in grid.pushed]

    assert ttls(None, TRAIN) == [None, None]  # Flower's default lifetime (12 hours)
    assert ttls(0.05, TRAIN)[0] == 0.05
    assert ttls(0.05, EVALUATE) == [None, None]


def test_without_per_node_queueing_a_held_request_goes_to_each_node_once_it_has_answered(grid):
    """Simulation (no per-node queue): the next round's request is held, and each node's part of it is pushed as
    soon as that node has answered its current one, never before: node 1 answers at once and gets its next request
    while node 2, slower, is still computing; node 2 gets its own only after answering."""
    events = []
    push, pull = grid.push_messages, grid.pull_messages
    grid.push_messages = lambda msgs: [events.append(("push", m.dst_node_id)) for m in msgs] and push(msgs)
    grid.pull_messages = lambda ids: [events.append(("reply", r.metadata.src_node_id)) or r for r in pull(ids)]
    grid.delay[2] = 0.2
    t = FlowerTransport(grid, {"p1": 1, "p2": 2}, timeout=5.0, poll=0.001, max_poll=0.01, queue_per_node=False)
    first = t.submit({n: Message(TRAIN, "run", 1, "active", n) for n in ("p1", "p2")})
    second = t.submit({n: Message(TRAIN, "run", 2, "active", n) for n in ("p1", "p2")})
    assert [e for e in events if e[0] == "push"] == [("push", 1), ("push", 2)]  # round 2 held
    assert set(t.collect(first)) == {"p1", "p2"}
    assert events == [("push", 1), ("push", 2), ("reply", 1), ("push", 1), ("reply", 2), ("push", 2)]
    assert set(t.collect(second)) == {"p1", "p2"}
    assert [m.dst_node_id for m in grid.pushed] == [1, 2, 1, 2]


def test_a_passive_that_is_gone_costs_one_deadline_and_is_taken_up_again_when_it_answers(grid):
    t = FlowerTransport(grid, {"p1": 1, "p2": 2}, timeout=5.0, poll=0.001, max_poll=0.01, round_timeout=DEADLINE)
    assert _round(t, 1)[0] == {"p1", "p2"}

    grid.up[2] = False
    got, took = _round(t, 2)
    assert got == {"p1"} and took >= DEADLINE  # the round waited its deadline for p2

    # its request expired with the deadline: the next round sends one more, as a probe, and does not wait for it
    sent = grid.sent_to(2)
    got, took = _round(t, 3)
    assert got == {"p1"} and took < DEADLINE / 2
    assert grid.sent_to(2) == sent + 1 and "not waited for" in t.errors.pop("p2")

    got, took = _round(t, 4)  # while that probe may still be answered, no more work is queued for p2
    assert got == {"p1"} and took < DEADLINE / 2
    assert grid.sent_to(2) == sent + 1 and "no new request" in t.errors.pop("p2")

    time.sleep(DEADLINE * 1.2)  # the probe expires in the SuperLink: the next round sends another
    got, took = _round(t, 5)
    assert got == {"p1"} and took < DEADLINE / 2 and grid.sent_to(2) == sent + 2
    t.errors.clear()

    grid.up[2] = True  # back: it answers the probe, late for round 5, which stays closed
    got, _ = _round(t, 6)
    assert got == {"p1"} and "no new request" in t.errors.pop("p2")  # round 6 was not sent to it
    got, _ = _round(t, 7)
    assert got == {"p1", "p2"} and t.absent == {}  # present again: waited for, and its reply used


def test_when_every_passive_is_absent_the_round_waits_for_them_and_a_slow_one_is_taken_up_again(grid):
    """With no passive present nothing would pace the rounds: training would race on alone and a passive that
    was only slow once would never be waited for again (seen on a loaded host: both passives of a deployment
    left out of every round after one late reply each). Such a round waits for the absent passives."""
    t = FlowerTransport(grid, {"p1": 1, "p2": 2}, timeout=5.0, poll=0.001, max_poll=0.01, round_timeout=DEADLINE)
    grid.up = {1: False, 2: False}
    got, took = _round(t, 1)
    assert got == set() and took >= DEADLINE and set(t.absent) == {"p1", "p2"}
    grid.up[1], grid.delay[1] = True, DEADLINE / 3  # p1 is back, and slow
    got, took = _round(t, 2)
    assert got == {"p1"} and took >= DEADLINE  # waited: p1 taken up in this very round, p2 given its deadline
    assert "p1" not in t.absent and "p2" in t.absent


def test_an_expired_request_is_reported_for_the_passive_it_was_sent_to(grid):
    """The SuperLink answers a request that expired with an error of its own (source node 0): the transport
    names the passive the request went to, not 'node 0'."""
    t = FlowerTransport(grid, {"p1": 1, "p2": 2}, timeout=5.0, poll=0.001, max_poll=0.01, round_timeout=DEADLINE)
    grid.up[2] = False
    ticket = t.submit({"p2": Message(TRAIN, "run", 1, "active", "p2")})
    time.sleep(DEADLINE * 1.2)  # expired before it is collected: the SuperLink's error is the only answer
    assert t.collect(ticket) == {}
    assert "Message Unavailable" in t.errors["p2"] and not any(k.startswith("node") for k in t.errors)


def test_a_passive_that_dies_while_uploading_its_reply_holds_up_neither_the_round_nor_the_other_passives(grid):
    """A SuperNode killed between registering its reply and uploading the reply's contents: Flower's pull of that
    reply hangs until its object-push session expires (180 s). In a deployment (``pull_each``) the round still
    ends at its deadline with the other passive's reply, and the next rounds do not wait for the stuck one."""
    t = FlowerTransport(
        grid, {"p1": 1, "p2": 2}, timeout=30.0, poll=0.001, max_poll=0.01, round_timeout=DEADLINE, pull_each=True
    )
    assert _round(t, 1)[0] == {"p1", "p2"}
    grid.stalled[2] = 4 * DEADLINE
    got, took = _round(t, 2)
    assert got == {"p1"} and DEADLINE <= took < 2 * DEADLINE  # one deadline for p2, not the 4 of its stuck pull
    for r in (3, 4):  # p2 absent: not waited for, while p1 answers at once
        got, took = _round(t, r)
        assert got == {"p1"} and took < DEADLINE / 2 and "p1" not in t.absent
    time.sleep(4 * DEADLINE)  # the stuck pull has ended with the SuperLink's error; p2 is back
    del grid.stalled[2]
    assert "p2" in t.absent
    rounds = [_round(t, r)[0] for r in (5, 6)]  # its probe is answered: taken up again
    assert rounds[-1] == {"p1", "p2"} and t.absent == {} and not t._pulls


def test_the_pulls_that_wait_for_a_reply_still_uploading_are_listed(grid):
    """Pulled while its sender still uploads it, a reply waits for Flower's retry (1 s); the transport lists how
    long each such pull took (the run's ``pulls_held``) and none of the pulls that took milliseconds."""
    t = FlowerTransport(grid, {"p1": 1, "p2": 2}, timeout=30.0, poll=0.001, max_poll=0.01, pull_each=True)
    assert _round(t, 1)[0] == {"p1", "p2"} and t.held == []
    grid.uploading[2] = 0.6
    got, took = _round(t, 2)
    assert got == {"p1", "p2"} and len(t.held) == 1 and 0.6 <= t.held[0] <= took
