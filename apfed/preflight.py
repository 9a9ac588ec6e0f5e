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


def _pem_certificate(path: str | Path):
    from cryptography import x509

    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def is_authority(path: str | Path) -> bool:
    """Whether a readable PEM certificate is a CA's (BasicConstraints CA:TRUE)."""
    from cryptography import x509

    try:
        return _pem_certificate(path).extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def check_issued_by(cert: str | Path, authorities: list[Path]) -> Path:
    """The CA among ``authorities`` that signed ``cert``; an error naming them when none did (the TLS handshake
    would fail later, with a far less clear message)."""
    from cryptography.exceptions import InvalidSignature

    leaf = _pem_certificate(cert)
    for ca in authorities:
        try:
            leaf.verify_directly_issued_by(_pem_certificate(ca))
            return ca
        except (ValueError, TypeError, InvalidSignature):  # another issuer's name, key type or signature
            continue
    names = ", ".join(map(str, authorities))
    raise ConfigError(f"{cert} is not signed by {names}: the SuperLink's certificate and the CA given must match")


def check_key_matches(key: str | Path, certs: list[Path]) -> Path | None:
    """The certificate among ``certs`` whose public key is that of the PEM private key ``key`` (None for an
    OpenSSH key, which belongs to no certificate); an error when a PEM key matches none of them."""
    from cryptography.hazmat.primitives import serialization

    data = Path(key).read_bytes()
    if b"OPENSSH PRIVATE KEY" in data:
        return None
    der = public_der(serialization.load_pem_private_key(data, password=None).public_key())
    for c in certs:
        if public_der(_pem_certificate(c).public_key()) == der:
            return c
    raise ConfigError(f"{key} is not the key of {', '.join(map(str, certs))}")


def public_der(public) -> bytes:
    """A public key's DER SubjectPublicKeyInfo: what a key and a certificate have in common when they match."""
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) into its parts; a clear error otherwise."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--connect {address!r} is not HOST:PORT (e.g. link.bank.example:9092)")
    return host, int(port)


def check_connection(address: str, authorities: list[Path], timeout: float = 10.0) -> str:
    """Reach ``address`` (the SuperLink's Fleet API) and complete a TLS handshake that verifies its certificate
    against ``authorities`` and the host name dialled, as a SuperNode will. Returns a line describing the
    certificate; each way it can fail is one clear error."""
    import ssl

    host, port = split_address(address)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise ConfigError(f"{host}: no such host (its name does not resolve here)") from None
    except ConnectionRefusedError:
        raise ConfigError(
            f"nothing listens on {address} (connection refused): is the SuperLink started, and is {port} its Fleet"
            " API port?"
        ) from None
    except TimeoutError:
        raise ConfigError(
            f"no answer from {address} within {timeout:.0f} s: a firewall may drop the connection, or the address"
            " is wrong"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot reach {address}: {e.strerror or e}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name; trusts only the CAs given
    for ca in authorities:
        ctx.load_verify_locations(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    cas = ", ".join(map(str, authorities))
    try:
        with sock, ctx.wrap_socket(sock, server_hostname=host) as tls:
            tls.settimeout(timeout)
            cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as e:
        if "Hostname mismatch" in str(e.verify_message) or "IP address mismatch" in str(e.verify_message):
            raise ConfigError(
                f"the certificate at {address} is not for {host}: dial a name it holds, or have the active party"
                f" reissue it for every name it should hold, this one included (apfed certs --force --host {host}"
                " --host ...)"
            ) from None
        if "expired" in str(e.verify_message):
            raise ConfigError(f"the certificate at {address} has expired: the active party must renew it") from None
        raise ConfigError(
            f"the certificate at {address} is not signed by {cas} ({e.verify_message}): ask the active party for"
            " the CA certificate its SuperLink uses"
        ) from None
    except ssl.SSLError as e:
        raise ConfigError(
            f"TLS handshake with {address} failed ({e.reason or e}): does it speak TLS (a SuperLink started with"
            " --insecure does not)?"
        ) from None
    except (TimeoutError, OSError) as e:
        raise ConfigError(f"{address} closed the connection during the TLS handshake ({e})") from None
    names = ", ".join(v for _, v in cert.get("subjectAltName", ()))
    return f"TLS verified with {cas}; its certificate is for {names}, valid until {cert.get('notAfter', '?')}"
