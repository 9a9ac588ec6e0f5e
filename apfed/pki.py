"""The deployment's TLS material, made without openssl: the active party's CA and the SuperLink's server
certificate (``apfed certs``), and a passive party's SuperNode key pair (``apfed nodekey``).

Private keys are written owner-only from the moment the file exists, and every file is written to a temporary
name and renamed, so an interrupted command never leaves half a key where a good one was."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from apfed.errors import ConfigError

CA_DAYS = 3650  # a new CA's lifetime: server certificates are renewed under it without touching the passives
SERVER_DAYS = 365
LOOPBACK = ("127.0.0.1", "localhost")
# A DNS name as a certificate's SAN holds it: dot-separated labels of letters, digits and inner hyphens.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def san_entries(hosts: list[str]) -> list:
    """Each host as a SubjectAlternativeName entry: an IP address, or a DNS name (checked)."""
    from cryptography import x509

    if not hosts:
        raise ConfigError("give at least one --host: the name or address the passives dial (e.g. link.bank.example)")
    out = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        labels = host.rstrip(".").split(".")
        if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
            raise ConfigError(f"--host {host!r} is neither an IP address nor a DNS name (letters, digits, '-', '.')")
        out.append(x509.DNSName(host.rstrip(".").lower()))
    return out


@dataclass(frozen=True)
class Authority:
    """A CA able to sign: its key and certificate."""

    key: object
    cert: object

    @property
    def not_after(self) -> datetime.datetime:
        return self.cert.not_valid_after_utc


def new_authority(name: str, days: int = CA_DAYS) -> Authority:
    """A fresh EC P-256 CA, self-signed, valid for ``days``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a peer's clock a little behind still accepts it
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def load_authority(cert_path: Path, key_path: Path) -> Authority:
    """The CA in ``cert_path`` and ``key_path``: readable, valid now, a CA, and the key is the certificate's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from apfed.preflight import check_certificate, check_key_matches, check_private_key, is_authority

    check_certificate(cert_path)
    check_private_key(key_path)
    if not is_authority(cert_path):
        raise ConfigError(f"{cert_path} is not a CA certificate (no BasicConstraints CA:TRUE)")
    check_key_matches(key_path, [cert_path])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return Authority(key, cert)


def server_certificate(ca: Authority, hosts: list[str], days: int = SERVER_DAYS) -> tuple[object, object]:
    """A new EC P-256 key and its TLS server certificate for ``hosts`` (the names or addresses passives dial),
    signed by ``ca``, valid for ``days`` (and never beyond the CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    sans = san_entries(hosts)
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    if not_after > ca.not_after:
        raise ConfigError(
            f"the CA expires on {ca.not_after:%Y-%m-%d}, before the {days} days asked for the server certificate;"
            " ask fewer --days, or make a new CA (move ca.crt and ca.key away; every passive then needs the new"
            " ca.crt)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(hosts[0]))]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return key, cert


def node_key_pair() -> tuple[bytes, bytes]:
    """A SuperNode's EC P-256 key pair in the OpenSSH formats Flower reads: (private key, ``ecdsa-sha2-nistp256
    ...`` public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + b"\n"


def ssh_fingerprint(public_line: bytes) -> str:
    """``SHA256:...`` of an OpenSSH public key line, as ``ssh-keygen -l`` prints it: what the two parties read
    to each other to check that the key registered is the one the passive made."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def pem_private(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def pem_certificate(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def write_file(path: Path, data: bytes, private: bool) -> None:
    """Write ``data`` to a temporary file beside ``path`` (owner-only if ``private``), then rename it over
    ``path``: an interruption leaves ``path`` as it was."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def refuse_existing(paths: list[Path], force: bool, what: str) -> None:
    """Stop before writing anything if one of ``paths`` exists and ``force`` is off."""
    if force:
        return
    for p in paths:
        if p.exists():
            raise ConfigError(f"{p} already exists; refusing to overwrite {what} (use --force to replace it)")


def _common_name(name: str) -> str:
    """X.509 caps a common name at 64 characters; the SAN, not the CN, is what TLS checks."""
    return name if len(name) <= 64 else name[:61] + "..."


def _usage(cert_sign: bool):
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Made:
    """What ``write_certs`` wrote: the files, whether the CA is new, and until when each is valid."""

    ca: Path
    ca_key: Path
    cert: Path
    key: Path
    new_ca: bool
    ca_until: datetime.datetime
    cert_until: datetime.datetime
    hosts: tuple[str, ...]


def write_certs(
    out: Path, hosts: list[str], days: int = SERVER_DAYS, force: bool = False, ca_days: int = CA_DAYS
) -> Made:
    """In ``out``: a CA (``ca.crt``, ``ca.key``; made once, then reused) and a server certificate for ``hosts``
    (``server.pem``, ``server.key``; ``force`` replaces an existing one, e.g. to renew it). Nothing is written
    unless everything checks out, and an existing CA is never replaced."""
    ca_path, ca_key_path = out / "ca.crt", out / "ca.key"
    cert_path, key_path = out / "server.pem", out / "server.key"
    san_entries(hosts)  # a bad host is reported before anything else
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a directory for the certificates")
    refuse_existing([cert_path, key_path], force, "a server certificate or key")
    if ca_path.exists() != ca_key_path.exists():
        have, lack = (ca_path, ca_key_path) if ca_path.exists() else (ca_key_path, ca_path)
        raise ConfigError(f"{have} is there but {lack} is not; a CA needs both (or move {have} away to make a new CA)")
    # the active party's own `flwr` reaches the SuperLink's HTTP API on loopback, over the same certificate
    hosts = [*hosts, *(h for h in LOOPBACK if h not in hosts)]
    new_ca = not ca_path.exists()
    ca = (
        new_authority(_common_name(f"apfed CA ({hosts[0]})"), max(ca_days, days + 1))
        if new_ca
        else load_authority(ca_path, ca_key_path)
    )
    key, cert = server_certificate(ca, hosts, days)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    if new_ca:
        write_file(ca_key_path, pem_private(ca.key), private=True)
        write_file(ca_path, pem_certificate(ca.cert), private=False)
    write_file(key_path, pem_private(key), private=True)
    write_file(cert_path, pem_certificate(cert), private=False)
    return Made(ca_path, ca_key_path, cert_path, key_path, new_ca, ca.not_after, cert.not_valid_after_utc, tuple(hosts))


def write_node_key(path: Path, force: bool = False) -> tuple[Path, Path, str]:
    """A SuperNode key pair: ``path`` (private, owner-only) and ``path.pub``; returns both and the public key's
    ``SHA256:`` fingerprint."""
    pub = path.with_name(path.name + ".pub")
    if not path.parent.is_dir():
        raise ConfigError(f"directory {path.parent} does not exist")
    refuse_existing([path, pub], force, "a key")
    private, public = node_key_pair()
    write_file(path, private, private=True)
    write_file(pub, public, private=False)
    return path, pub, ssh_fingerprint(public)
