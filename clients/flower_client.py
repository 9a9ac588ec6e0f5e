"""The passive party's Flower ClientApp.

Flower runs it in a fresh process for every message, so this module imports neither torch nor the models.

- Deployment (the node config names ``party=passiveN``): the ClientApp relays each request to the node's
  long-lived passive worker (``clients.passive_worker``), which keeps torch, the data and the models loaded and
  writes a node-local state file after every state change. With ``worker-socket=PATH`` the party has started that
  worker itself, from its own installation (``apfed worker``), and the ClientApp, which is the active party's
  code, only relays bytes to it (docs/security.md). ``worker=false`` in the node config instead rebuilds
  the passive in every ClientApp from ``context.state`` (slower: torch import and state restore per message).
- Simulation (virtual nodes with ``partition-id``): the passive is rebuilt from ``context.state``, with a cache
  for the case where one worker process handles consecutive messages.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from clients.audit import AuditLog
from clients.policy import POLICY_KEYS, PassivePolicy
from protocols.codec import decode, encode
from protocols.flower import from_recorddict, to_recorddict

if TYPE_CHECKING:
    from clients.flower_app import RunSettings
    from clients.passive import PassiveClient

_CACHE: dict[int, tuple[int, PassiveClient]] = {}


def _party_index(nc: dict) -> tuple[str, int]:
    from apfed.errors import ConfigError

    if "partition-id" in nc:  # simulation: virtual node i is passive i+1 of the settings' dataset
        index = int(nc["partition-id"])
        return f"passive{index + 1}", index
    name = str(nc.get("party", ""))  # deployment: the node's own config names its party and data
    if not name.startswith("passive") or not name.removeprefix("passive").isdigit():
        raise ConfigError("node config needs party=passiveN")
    return name, int(name.removeprefix("passive")) - 1


def passive_from_node_config(nc: dict, settings: RunSettings | None = None) -> PassiveClient:
    """A fresh passive party from its node config: its own file (``data=``) or a bundled dataset's view."""
    from clients.flower_app import RunSettings, passive_party
    from clients.passive import PassiveClient

    name, index = _party_index(nc)
    if settings is None and "data" in nc:  # deployment with the party's own file
        from apfed.data.encoding import describe
        from apfed.data.files import passive_party_file

        data = passive_party_file(str(nc["data"]), str(nc.get("id-column", "id")))
        for line in describe(os.path.basename(str(nc["data"])), data.view):
            print(f"apfed: {line}", file=sys.stderr, flush=True)  # the node's passive worker: into its worker.log
    else:
        s = settings or RunSettings.from_run_config({k: v for k, v in nc.items() if k not in NODE_KEYS})
        data = passive_party(s, index)
    # a deployed node names its own device; a simulated one runs on the run's device (simulate reserves a GPU share)
    device = str(nc.get("device") or (settings.device if settings is not None and "partition-id" in nc else "cpu"))
    policy = PassivePolicy.from_node_config(nc)
    if policy.limits:
        print(f"apfed: {name}'s limits on any run: {policy.describe()}", file=sys.stderr, flush=True)
    audit = AuditLog(str(nc["audit-log"])) if nc.get("audit-log") else None
    checkpoint_dir = str(nc.get("checkpoint-dir", "")) or None
    return PassiveClient(name, data, device, _sealing(nc), checkpoint_dir, policy, audit)


NODE_KEYS = (
    "party",
    "device",
    "worker",
    "worker-socket",
    "seal-key",
    "active-fingerprint",
    "checkpoint-dir",
    "audit-log",
    *POLICY_KEYS,
)


def _sealing(nc: dict):
    """Encryption settings from the node config: this party's key file and the pinned active fingerprint."""
    from apfed.errors import ConfigError

    if not nc.get("seal-key"):
        if nc.get("active-fingerprint"):
            raise ConfigError("active-fingerprint is set but seal-key is not: give this party's key")
        return None
    from protocols.sealing import PartyKey, Sealing, check_fingerprint

    if not nc.get("active-fingerprint"):
        raise ConfigError("seal-key is set: pin the active party's key with active-fingerprint=sha256:<hex>")
    pin = check_fingerprint(str(nc["active-fingerprint"]), "active-fingerprint")
    return Sealing(PartyKey.load(str(nc["seal-key"])), {"active": pin})


def _passive_for(context, settings: RunSettings | None) -> PassiveClient:
    meta = context.state.config_records.get("apfed_meta") if hasattr(context.state, "config_records") else None
    version = int(meta["version"]) if meta is not None else 0
    cached = _CACHE.get(context.node_id)
    if cached is not None and cached[0] == version:
        return cached[1]
    client = passive_from_node_config(dict(context.node_config), settings)
    if version:
        client.restore(context.state.array_records["apfed_state"]["blob"].numpy().tobytes())
    return client


def _save(context, client: PassiveClient) -> None:
    from flwr.app import Array, ArrayRecord, ConfigRecord

    meta = context.state.config_records.get("apfed_meta")
    version = (int(meta["version"]) if meta is not None else 0) + 1
    blob = np.frombuffer(client.state_bytes(), dtype=np.uint8)
    context.state.array_records["apfed_state"] = ArrayRecord({"blob": Array(blob)})
    context.state.config_records["apfed_meta"] = ConfigRecord({"version": version})
    _CACHE[context.node_id] = (version, client)


def uses_worker(nc: dict) -> bool:
    return "partition-id" not in nc and str(nc.get("worker", "true")).lower() not in ("false", "0", "no")


def make_client_app(settings: RunSettings | None = None):
    from flwr.app import Message as FlowerMessage
    from flwr.clientapp import ClientApp

    app = ClientApp()
    # a SuperNode logs every message; in simulation that floods the console, so it is debug (`--verbose`) there
    level = logging.INFO if settings is None else logging.DEBUG

    @app.train("apfed")
    def handle(msg, context):
        t0 = time.perf_counter()
        request = from_recorddict(msg.content)
        nc = dict(context.node_config)
        if nc.get("worker-socket"):  # the party's own worker (`apfed worker`): this app only relays the bytes
            from clients.passive_worker import relay

            reply = decode(relay(str(nc["worker-socket"]), encode(request)))
            logging.getLogger("flwr").info(
                "apfed %s via the party's worker: %.2fs (round %d)",
                request.kind,
                time.perf_counter() - t0,
                request.round,
            )
        elif uses_worker(nc):
            from clients.passive_worker import call

            _party_index(nc)  # a clear error for a bad node config, before any worker starts
            reply = decode(call(context.node_id, nc, encode(request), os.getppid()))
            logging.getLogger("flwr").info(
                "apfed %s via worker: %.2fs (round %d)", request.kind, time.perf_counter() - t0, request.round
            )
        else:
            client = _passive_for(context, settings)
            t1 = time.perf_counter()
            reply = client.handle(request)
            t2 = time.perf_counter()
            _save(context, client)
            logging.getLogger("flwr").log(
                level,
                "apfed %s %s: load %.2fs, handle %.2fs, save %.2fs",
                client.name,
                request.kind,
                t1 - t0,
                t2 - t1,
                time.perf_counter() - t2,
            )
        return FlowerMessage(to_recorddict(reply), reply_to=msg)

    return app


# The ClientApp named in pyproject.toml [tool.flwr.app.components], for `flwr run`.
client_app = make_client_app()
