"""The deployment commands: ``apfed certs``, ``nodekey``, ``worker``, ``clientapps``, ``keygen``, ``audit`` and
``preflight``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from apfed.cli.common import app
from apfed.errors import ConfigError, DataError
from clients.supernode import HEARTBEAT_S, IDLE_POLL_S  # no Flower import: that waits for the command itself
from protocols.errors import ProtocolError


@app.command(rich_help_panel="Deployment")
def certs(
    host: Annotated[
        list[str],
        typer.Option(help="A name or IP address the passives dial to reach the SuperLink (repeatable)."),
    ],
    out: Annotated[Path, typer.Option(help="Directory for ca.crt, ca.key, server.pem and server.key.")] = Path("pki"),
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days the server certificate is valid.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing server certificate (renewal).")] = False,
):
    """Active party: make a CA (once; later runs reuse it) and the SuperLink's TLS server certificate for --host."""
    from apfed.pki import write_certs

    made = write_certs(out, host, days, force)
    ca = "new" if made.new_ca else "existing, reused"
    typer.echo(f"CA certificate {made.ca} ({ca}; valid until {made.ca_until:%Y-%m-%d}): give it to every passive party")
    if made.new_ca:
        typer.echo(f"CA key {made.ca_key}: it signs the server certificates; keep it to yourself, offline if you can")
    typer.echo(
        f"server certificate {made.cert} for {', '.join(made.hosts)} (valid until {made.cert_until:%Y-%m-%d}),"
        f" key {made.key}: for the SuperLink only"
    )
    typer.echo(
        f"start it with: flower-superlink --ssl-ca-certfile {made.ca} --ssl-certfile {made.cert}"
        f" --ssl-keyfile {made.key} --enable-supernode-auth --disable-runtime-dependency-installation"
    )


@app.command(rich_help_panel="Deployment")
def nodekey(
    out: Annotated[Path, typer.Argument(help="Where to write the private key; the public key goes to OUT.pub.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key pair.")] = False,
):
    """Passive party: make the SuperNode's key pair (EC P-256, OpenSSH); print the public key's fingerprint."""
    from apfed.pki import write_node_key

    private, public, fingerprint = write_node_key(out, force)
    typer.echo(fingerprint)
    typer.echo(
        f"wrote {private} (private: it stays on this node, --auth-supernode-private-key) and {public}: send {public}"
        f" to the active party, which registers it (flwr supernode register {public.name} CONNECTION); read each"
        " other the fingerprint above to check it is this key",
        err=True,
    )


@app.command(rich_help_panel="Deployment")
def worker(
    socket_path: Annotated[
        Path,
        typer.Option("--socket", help="Where to listen: the SuperNode's node config names it (worker-socket='PATH')."),
    ],
    node_config: Annotated[
        str,
        typer.Option(
            help="This party's settings, as a SuperNode's --node-config: party='passiveN' data='FILE'"
            " id-column='C', and its limits, audit-log, checkpoint-dir, seal-key, device (or a .toml file)."
        ),
    ],
):
    """Passive party: serve its data to its SuperNode from this installation's apfed, not the app's code."""
    import signal
    from datetime import datetime

    from clients.flower_client import passive_from_node_config
    from clients.passive_worker import party_config, serve_party, serving

    nc = party_config(node_config)
    socket_path = socket_path.absolute()
    if not socket_path.parent.is_dir():
        raise DataError(f"directory {socket_path.parent} does not exist (--socket)")
    if len(str(socket_path)) > 100:
        raise ConfigError(f"--socket {socket_path}: a Unix socket path must be under about 100 characters")
    if serving(socket_path):
        raise ConfigError(f"a worker already serves at {socket_path}; stop it first, or give another --socket")
    client = passive_from_node_config(nc)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill`: leave through the finally that removes the socket

    def show(msg) -> None:
        if msg.kind in ("setup", "finish"):
            what = "set-up of" if msg.kind == "setup" else "end of"
            typer.echo(f"{datetime.now():%H:%M:%S} {what} run {msg.run_id} from {msg.sender}", err=True)

    typer.echo(
        f"apfed worker: {client.name}, {len(client.data.ids):,} rows; listening on {socket_path}"
        f" (its SuperNode's node config: worker-socket='{socket_path}'); stop with Ctrl-C",
        err=True,
    )
    serve_party(client, socket_path, on_request=show)


@app.command(rich_help_panel="Deployment")
def clientapps(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="A directory of this user's alone (made 0700): the socket, and bin/flwr-clientapp, which goes first"
            " on the SuperNode's PATH.",
        ),
    ],
):
    """Passive party: fork the SuperNode's ClientApp processes from one that has imported Flower once."""
    from clients.warm_clientapp import start

    start(directory, log=lambda line: typer.echo(line, err=True))


@app.command(
    rich_help_panel="Deployment",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def supernode(
    ctx: typer.Context,
    idle_poll: Annotated[
        float,
        typer.Option(
            "--idle-poll",
            help="Seconds between two pulls that find no message (Flower's own: 3); an idle node pulls 1/S times a"
            " second.",
        ),
    ] = IDLE_POLL_S,
    heartbeat_interval: Annotated[
        float,
        typer.Option(
            "--heartbeat-interval",
            help="Seconds a heartbeat vouches for this node (Flower's own: 30; 10 to 1800). The SuperLink takes the"
            " node for gone after two without one, and refuses it restarted with the same key until then.",
        ),
    ] = HEARTBEAT_S,
):
    """Passive party: Flower's flower-supernode (same options, after apfed's), its fixed waits shortened.

    Every option but --idle-poll and --heartbeat-interval is flower-supernode's own (flower-supernode --help)."""
    from clients.supernode import run

    if not 0.01 <= idle_poll <= 3:
        raise ConfigError(f"--idle-poll {idle_poll:g}: give seconds from 0.01 to 3")
    if not 10 <= heartbeat_interval <= 1800:  # the SuperLink's bounds: it refuses the node otherwise
        raise ConfigError(f"--heartbeat-interval {heartbeat_interval:g}: give seconds from 10 to 1800")
    if not ctx.args:
        raise ConfigError("give flower-supernode's options after apfed supernode's, e.g. --superlink HOST:9092 ...")
    run(list(ctx.args), idle_poll, log=lambda line: typer.echo(line, err=True), heartbeat=heartbeat_interval)


@app.command(rich_help_panel="Deployment")
def keygen(
    out: Annotated[Path, typer.Argument(help="Where to write the new private key (PEM, owner-only).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
):
    """Make a party's X25519 key for --encrypt / seal-key; print the fingerprint its peers pin."""
    from protocols.sealing import PartyKey

    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; refusing to overwrite a key (use --force)")
    if not out.parent.is_dir():
        raise DataError(f"directory {out.parent} does not exist")
    key = PartyKey()
    key.save(out)
    typer.echo(key.fingerprint)
    typer.echo(f"wrote {out}; give the fingerprint above to the other parties to pin", err=True)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@app.command(rich_help_panel="Deployment")
def audit(
    log: Annotated[Path, typer.Argument(help="A passive party's audit log (node config audit-log).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
):
    """Passive party: summarize its audit log, one row per run: who asked what, when, and what it sent."""
    import json

    from clients.audit import read_log, summarize

    runs = summarize(read_log(log))
    if as_json:
        typer.echo(json.dumps(runs, indent=2))
        return
    from rich.table import Table

    from apfed.report import table_console

    t = Table(title=f"{log}: {len(runs)} run(s)", title_justify="left")
    for column in ("run", "party", "asked by", "method", "when (UTC)", "rows shared / IDs offered", "requests"):
        t.add_column(column)
    t.add_column("sent")
    t.add_column("errors sent")
    for r in runs:
        sent = "\n".join(f"{name} {_size(b)}" for name, b in sorted(r.get("bytes_sent", {}).items())) or "-"
        first, last = (str(r.get(k) or "-")[:19].replace("T", " ") for k in ("first", "last"))
        when = first if last == first else f"{first} to {last[11:] if last[:10] == first[:10] else last}"
        errors = r.get("errors", [])
        error = (errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")) if errors else "-"
        rows = f"{r.get('shared_rows', '-')} / {r.get('ids_offered', '-')}"
        t.add_row(
            r["run_id"],
            r.get("party"),
            r.get("active"),
            r.get("method") or "-",
            when,
            rows,
            str(r["requests"]),
            sent,
            error,
        )
    table_console().print(t)


def _data_line(
    path: Path,
    id_column: str,
    label_column: str | None,
    test_fraction: float = 0.2,
    task: str = "classification",
    time_column: str | None = None,
) -> str:
    """``preflight --data``: read a party's file as its deployment will, and say what it holds."""
    from apfed.data.encoding import describe
    from apfed.data.files import active_party_file, passive_party_file
    from apfed.data.splits import check_task, check_test_fraction

    if label_column is None:
        if time_column is not None:
            raise ConfigError("--time-column goes with --label-column: the active party's file splits by time")
        d = passive_party_file(path, id_column)
        what = "a passive party's file"
    else:
        d = active_party_file(
            path,
            id_column,
            label_column,
            test_fraction=check_test_fraction(test_fraction),
            task=check_task(task),
            time_column=time_column,
        )
        if task == "regression":
            import numpy as np

            known = d.labels[~np.isnan(d.labels)]
            what = f"the active party's file, a numeric target from {known.min():.4g} to {known.max():.4g}"
        else:
            what = f"the active party's file, {len(d.class_names)} classes"
    notes = "; ".join(line.removeprefix(f"{path.name}: ") for line in describe(path.name, d.view))
    shape = "x".join(map(str, d.view.shape))
    line = f"data {path}: {what}, {len(d.ids)} rows of {shape} features"
    if label_column is not None:
        n_test = len(d.test_rows)
        line += f" ({n_test} held out to test)" if n_test else " (every labelled row trains: test fraction 0)"
        if d.split:
            from apfed.data.timesplit import time_split_text

            line += f", {time_split_text(d.split)}"
        if (n := 0 if d.unlabelled_rows is None else len(d.unlabelled_rows)) > 0:
            line += f", {n} with no label (they train apfed-r/c/m/kd through the passives' losses)"
    return line + (f"; {notes}" if notes else "")


@app.command(rich_help_panel="Deployment")
def preflight(
    seal_key: Annotated[Path | None, typer.Option(help="This party's X25519 key (apfed keygen).")] = None,
    pin: Annotated[list[str] | None, typer.Option(help="A pinned fingerprint, NAME=sha256:... (repeatable).")] = None,
    cert: Annotated[list[Path] | None, typer.Option(help="A PEM certificate (CA or server; repeatable).")] = None,
    key: Annotated[list[Path] | None, typer.Option(help="A TLS or SuperNode private key (repeatable).")] = None,
    port: Annotated[list[int] | None, typer.Option(help="A port this party will listen on (repeatable).")] = None,
    host: Annotated[str, typer.Option(help="The address those ports bind to.")] = "127.0.0.1",
    connect: Annotated[
        str | None,
        typer.Option(
            help="A passive: the SuperLink's Fleet address, HOST:PORT, reached over TLS with the CA of --cert."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="This party's data file, read as its node (or the ServerApp) will read it.")
    ] = None,
    id_column: Annotated[str, typer.Option(help="--data's ID column.")] = "id",
    label_column: Annotated[
        str | None, typer.Option(help="The active party's label column (a passive's file must not have it).")
    ] = None,
    test_fraction: Annotated[
        float, typer.Option(help="With --label-column: the run config's test-fraction, the split to check.")
    ] = 0.2,
    task: Annotated[
        str, typer.Option(help="With --label-column: the run config's task, classification or regression.")
    ] = "classification",
    time_column: Annotated[
        str | None, typer.Option(help="With --label-column: the run config's time-column, the split to check.")
    ] = None,
    worker_socket: Annotated[
        str | None,
        typer.Option(help="A passive's SuperNode user: the socket of its own worker (apfed worker), to reach."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(help="The active party: the run config's recipe file, read as the ServerApp will read it."),
    ] = None,
    clientapps: Annotated[
        Path | None,
        typer.Option(
            help="A passive's SuperNode user, with the SuperNode's PATH: the --dir of its warm ClientApp server"
            " (apfed clientapps), which must answer, its flwr-clientapp first on the PATH."
        ),
    ] = None,
):
    """Check keys, certificates, pins, ports (and with --connect the SuperLink) before a deployment starts."""
    from apfed import preflight as pf
    from protocols.sealing import PartyKey, parse_pins

    if seal_key is None and not (
        pin or cert or key or port or connect or data or worker_socket or recipe or clientapps
    ):
        raise ConfigError(
            "nothing to check: give --seal-key, --pin, --cert, --key, --port, --connect, --data, --worker-socket,"
            " --clientapps or --recipe"
        )
    checked = 0
    try:
        if seal_key is not None:
            fingerprint = PartyKey.load(seal_key).fingerprint
            pf.check_private_to_owner(seal_key)
            typer.echo(f"seal key {seal_key}: {fingerprint} (give this to the other parties to pin)")
            checked += 1
        for name, fingerprint in parse_pins(pin or []).items():
            typer.echo(f"pin {name}: {fingerprint}")
            checked += 1
        for c in cert or []:
            typer.echo(f"certificate {c}: {pf.check_certificate(c)}")
            checked += 1
        authorities = [c for c in cert or [] if pf.is_authority(c)]
        leaves = [c for c in cert or [] if c not in authorities]
        if authorities:
            for c in leaves:
                typer.echo(f"certificate {c}: signed by {pf.check_issued_by(c, authorities)}")
        for k in key or []:
            kind = pf.check_private_key(k)
            pf.check_private_to_owner(k)
            mine = pf.check_key_matches(k, cert) if leaves else None  # a key may belong to a certificate not given
            typer.echo(
                f"private key {k}: {kind}, readable by its owner only" + (f", the key of {mine}" if mine else "")
            )
            checked += 1
        for p in port or []:
            pf.check_port_free(p, host)
            typer.echo(f"port {p} on {host}: free")
            checked += 1
        if data is not None:
            typer.echo(_data_line(data, id_column, label_column, test_fraction, task, time_column))
            checked += 1
        if connect:
            if not authorities:
                raise ConfigError("--connect needs the CA certificate to trust: give it with --cert ca.crt")
            typer.echo(f"SuperLink {connect}: {pf.check_connection(connect, authorities)}")
            checked += 1
        if worker_socket:
            from clients.passive_worker import probe

            probe(worker_socket)
            typer.echo(f"worker {worker_socket}: answers (this user may connect)")
            checked += 1
        if clientapps is not None:
            from clients.warm_clientapp import check

            typer.echo(f"warm ClientApp server {clientapps}: {check(clientapps)}")
            checked += 1
        if recipe is not None:
            from clients.flower_app import RunSettings

            typer.echo(RunSettings.from_recipe(recipe).recipe_note + " (a valid training recipe)")
            checked += 1
    except ProtocolError as e:
        raise ConfigError(str(e)) from None
    typer.echo(f"preflight: all {checked} checked are usable")
