"""`apfed certs` and `apfed nodekey`: the deployment's CA, server certificate and SuperNode keys.

A SuperLink and SuperNodes using exactly these files run in tests/test_deployment.py (deploy.make_pki calls
apfed.pki)."""

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading

import pytest
from conftest import run_cli
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apfed.errors import ConfigError
from apfed.pki import (
    load_authority,
    new_authority,
    pem_certificate,
    pem_private,
    server_certificate,
    write_certs,
    write_node_key,
)
from apfed.preflight import check_certificate, check_connection, check_private_key, check_private_to_owner


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert) -> set[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in sans.get_values_for_type(x509.DNSName) + sans.get_values_for_type(x509.IPAddress)}


def test_certs_make_a_ca_and_a_server_certificate_it_signed_for_the_hosts_and_loopback(tmp_path):
    made = write_certs(tmp_path / "pki", ["link.bank.example", "203.0.113.7"])
    ca, server = _load(made.ca), _load(made.cert)
    server.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _names(server) == {"link.bank.example", "203.0.113.7", "127.0.0.1", "localhost"}
    assert 364 <= check_certificate(made.cert).days_left <= 365 and check_certificate(made.ca).days_left >= 3600
    for key, cert in ((made.key, server), (made.ca_key, ca)):
        assert check_private_key(key) == "EC (secp256r1)"
        check_private_to_owner(key)  # 0600 from the start
        private = serialization.load_pem_private_key(key.read_bytes(), None)
        assert private.public_key().public_numbers() == cert.public_key().public_numbers()
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700


def test_certs_reuse_the_ca_renew_only_with_force_and_never_replace_the_ca(tmp_path):
    out = tmp_path / "pki"
    first = write_certs(out, ["link.bank.example"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match="server.pem already exists; refusing to overwrite"):
        write_certs(out, ["link.bank.example"], days=30)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    renewed = write_certs(out, ["link.bank.example"], days=30, force=True)
    assert not renewed.new_ca and first.new_ca
    assert (
        out.joinpath("ca.crt").read_bytes() == before["ca.crt"]
        and out.joinpath("ca.key").read_bytes() == before["ca.key"]
    )
    assert out.joinpath("server.pem").read_bytes() != before["server.pem"]
    _load(renewed.cert).verify_directly_issued_by(_load(first.ca))  # the passives' ca.crt still trusts it
    assert 29 <= check_certificate(renewed.cert).days_left <= 30
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "server.key", "server.pem"]  # no temp file


def test_certs_refuse_bad_hosts_half_a_ca_a_non_ca_and_a_ca_that_expires_too_soon(tmp_path):
    for host in ("bad host", "-lead.example", "a..b", ""):
        with pytest.raises(ConfigError, match="neither an IP address nor a DNS name"):
            write_certs(tmp_path / "x", [host])
    assert not (tmp_path / "x").exists()  # checked before anything is written
    with pytest.raises(ConfigError, match="at least one --host"):
        write_certs(tmp_path / "x", [])
    out = tmp_path / "pki"
    made = write_certs(out, ["link"])
    made.ca_key.unlink()
    made.cert.unlink()
    made.key.unlink()
    with pytest.raises(ConfigError, match="ca.crt is there but .*ca.key is not"):
        write_certs(out, ["link"])
    other = write_certs(tmp_path / "other", ["link"])
    with pytest.raises(ConfigError, match="server.pem is not a CA certificate"):
        load_authority(other.cert, other.key)
    with pytest.raises(ConfigError, match="ca.key is not the key of"):
        load_authority(other.ca, _ca_key_of_another(tmp_path))
    short = new_authority("short", days=10)
    with pytest.raises(ConfigError, match="the CA expires on .* before the 30 days asked"):
        server_certificate(short, ["link"], days=30)


def _ca_key_of_another(tmp_path):
    return write_certs(tmp_path / "another", ["link"]).ca_key


def test_node_key_pair_is_an_openssh_p256_pair_with_ssh_keygens_fingerprint(tmp_path):
    private, public, fingerprint = write_node_key(tmp_path / "node")
    assert public == tmp_path / "node.pub"
    key = serialization.load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    check_private_to_owner(private)
    line = public.read_text()
    assert line.startswith("ecdsa-sha2-nistp256 ") and line.endswith("\n")
    pub = serialization.load_ssh_public_key(line.encode())
    assert pub.public_numbers() == key.public_key().public_numbers()
    if shutil.which("ssh-keygen"):
        shown = subprocess.run(["ssh-keygen", "-l", "-f", public], capture_output=True, text=True, check=True)
        assert shown.stdout.split()[1] == fingerprint
    assert fingerprint.startswith("SHA256:") and len(fingerprint) == 7 + 43
    with pytest.raises(ConfigError, match="node already exists; refusing to overwrite a key"):
        write_node_key(tmp_path / "node")
    assert write_node_key(tmp_path / "node", force=True)[2] != fingerprint


def test_certs_and_nodekey_on_the_command_line(tmp_path):
    code, out, err = run_cli("certs", "--host", "link.bank.example", "--out", tmp_path / "pki")
    assert code == 0, err
    assert "(new; valid until" in out and "for link.bank.example, 127.0.0.1, localhost" in out
    assert f"--ssl-certfile {tmp_path / 'pki' / 'server.pem'}" in out
    code, out, err = run_cli("certs", "--host", "link.bank.example", "--out", tmp_path / "pki")
    assert code == 2 and err.count("\n") == 1 and "use --force to replace it" in err and "Traceback" not in err
    code, out, err = run_cli("certs", "--host", "link.bank.example", "--out", tmp_path / "pki", "--force")
    assert code == 0 and "(existing, reused;" in out and "CA key" not in out, err
    code, out, err = run_cli("certs", "--host", "no_underscores", "--out", tmp_path / "p2")
    assert code == 2 and err.startswith("error: --host 'no_underscores' is neither") and err.count("\n") == 1
    code, out, err = run_cli("nodekey", tmp_path / "node")
    assert code == 0 and out.strip().startswith("SHA256:") and "flwr supernode register node.pub" in err
    code, out, err = run_cli("preflight", "--key", tmp_path / "node", "--cert", tmp_path / "pki" / "server.pem")
    assert code == 0 and "all 2 checked are usable" in out, err
    code, _, err = run_cli("nodekey", tmp_path / "missing" / "node")
    assert code == 2 and "directory" in err and err.count("\n") == 1


@contextlib.contextmanager
def _server(certfile=None, keyfile=None):
    """A one-thread server on a free loopback port: TLS with ``certfile`` (answering every handshake), or plain
    TCP that answers with a line of HTTP; yields its port and stops (bounded) on exit."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    ctx = None
    if certfile:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        ctx.set_alpn_protocols(["h2"])
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    if ctx is None:
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                    else:
                        with ctx.wrap_socket(conn, server_side=True) as tls:
                            tls.recv(1)  # until the client closes
                except (OSError, ssl.SSLError):
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        t.join(10)
        listener.close()


def test_connect_reaches_the_superlink_verifies_its_certificate_and_names_each_failure(tmp_path):
    made = write_certs(tmp_path / "pki", ["link.bank.example"])
    other = write_certs(tmp_path / "other", ["link.bank.example"])
    with _server(made.cert, made.key) as port:
        for host in ("127.0.0.1", "localhost"):
            line = check_connection(f"{host}:{port}", [made.ca])
            assert line.startswith(f"TLS verified with {made.ca}; its certificate is for link.bank.example, 127.0.0.1")
        with pytest.raises(ConfigError, match=f"at 127.0.0.1:{port} is not signed by .*other/ca.crt"):
            check_connection(f"127.0.0.1:{port}", [other.ca])
    ca = load_authority(made.ca, made.ca_key)
    key, cert = server_certificate(ca, ["link.bank.example"])  # without the loopback names
    (tmp_path / "name.pem").write_bytes(pem_certificate(cert))
    (tmp_path / "name.key").write_bytes(pem_private(key))
    with _server(tmp_path / "name.pem", tmp_path / "name.key") as port, pytest.raises(ConfigError) as e:
        check_connection(f"127.0.0.1:{port}", [made.ca])
    assert f"at 127.0.0.1:{port} is not for 127.0.0.1: dial a name it holds" in str(e.value)
    with _server() as port, pytest.raises(ConfigError, match="TLS handshake with .* failed .*: does it speak TLS"):
        check_connection(f"127.0.0.1:{port}", [made.ca])
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(ConfigError, match=f"nothing listens on 127.0.0.1:{closed} \\(connection refused\\)"):
        check_connection(f"127.0.0.1:{closed}", [made.ca])
    with pytest.raises(ConfigError, match="no such host"):
        check_connection("no-such-host.invalid:9092", [made.ca])
    for bad in ("127.0.0.1", "127.0.0.1:0", ":9092", "host:port"):
        with pytest.raises(ConfigError, match="is not HOST:PORT"):
            check_connection(bad, [made.ca])


def test_preflight_checks_the_server_certificate_against_the_ca_and_each_tls_key_against_its_certificate(tmp_path):
    made = write_certs(tmp_path / "pki", ["link.bank.example"])
    other = write_certs(tmp_path / "other", ["link.bank.example"])
    code, out, err = run_cli(
        "preflight", "--cert", made.ca, "--cert", made.cert, "--key", made.key, "--key", made.ca_key
    )
    assert code == 0 and f"certificate {made.cert}: signed by {made.ca}" in out, err
    assert f"private key {made.key}: EC (secp256r1), readable by its owner only, the key of {made.cert}" in out
    code, _, err = run_cli("preflight", "--cert", other.ca, "--cert", made.cert)
    assert code == 2 and f"{made.cert} is not signed by {other.ca}" in err and err.count("\n") == 1
    code, _, err = run_cli("preflight", "--cert", made.cert, "--key", other.key)
    assert code == 2 and f"{other.key} is not the key of {made.cert}" in err and err.count("\n") == 1
    code, out, err = run_cli("preflight", "--cert", made.ca, "--key", other.key)  # its certificate not given
    assert code == 0, err
    code, _, err = run_cli("preflight", "--connect", "127.0.0.1:9092")
    assert code == 2 and "--connect needs the CA certificate" in err


def test_a_host_longer_than_a_common_name_may_be_is_still_named_in_full_where_tls_looks(tmp_path):
    long = "a" * 60 + "." + "b" * 60 + ".example"  # a valid DNS name; X.509 caps a CN at 64 characters
    made = write_certs(tmp_path / "pki", [long])
    server = _load(made.cert)
    assert long in _names(server) and len(server.subject.rfc4514_string()) <= 3 + 64
    server.verify_directly_issued_by(_load(made.ca))
