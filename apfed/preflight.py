"""Checks a party runs before it starts a deployment: its keys and certificates are readable and valid now,
and the ports it will listen on are free. Each problem is one clear ApfedError."""

from __future__ import annotations

import datetime
import socket
from dataclasses import dataclass
from pathlib import Path

from apfed.errors import ConfigError


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a port another process already listens on (or that cannot be bound here)."""
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} is not a valid TCP port")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"port {port} on {host} is already in use ({e.strerror}); choose another") from None


RENEW_DAYS = 30  # a certificate that expires sooner is named in a warning: a long run may outlive it


@dataclass(frozen=True)
class Validity:
    """A usable certificate's subject and how long it stays valid; ``str()`` is preflight's line for it."""

    subject: str
    not_after: datetime.datetime
    days_left: int

    @property
    def expiring(self) -> bool:
        return self.days_left < RENEW_DAYS

    def __str__(self) -> str:
        n = self.days_left
        days = "less than a day" if n == 0 else f"{n} day{'s' if n > 1 else ''}"
        line = f"{self.subject}, valid until {self.not_after:%Y-%m-%d %H:%M} UTC ({days})"
        return line + (f"; warning: it expires within {RENEW_DAYS} days, renew it" if self.expiring else "")


def check_certificate(path: str | Path, now: datetime.datetime | None = None) -> Validity:
    """A PEM X.509 certificate that can be read and is valid at ``now`` (default: the current time); returns
    its subject and how long it stays valid."""
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the certificate {path}: {e.strerror or e}") from None
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{path} is not a PEM certificate") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        raise ConfigError(f"the certificate {path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it")
    if cert.not_valid_before_utc > now:
        raise ConfigError(f"the certificate {path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    subject = cert.subject.rfc4514_string() or "no subject"
    return Validity(subject, cert.not_valid_after_utc, (cert.not_valid_after_utc - now).days)


def check_private_key(path: str | Path) -> str:
    """A readable, unencrypted PEM or OpenSSH private key (TLS server key or SuperNode key); returns its kind."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the private key {path}: {e.strerror or e}") from None
    loaders = (serialization.load_pem_private_key, serialization.load_ssh_private_key)
    for load in loaders:
        try:
            return _key_kind(load(data, password=None))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    raise ConfigError(f"{path} is not an unencrypted PEM or OpenSSH private key")


def _key_kind(key) -> str:
    """``EC (secp256r1)``, ``RSA (3072 bits)``, or the key type's name."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC ({key.curve.name})"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA ({key.key_size} bits)"
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey")


def check_private_to_owner(path: str | Path) -> None:
    """A private key file that no other user can read or write (as ssh requires of its keys); POSIX only."""
    import os
    import stat

    if os.name != "posix":
        return
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} can be read or written by other users (mode {mode:04o}): run chmod 600 {path}")
