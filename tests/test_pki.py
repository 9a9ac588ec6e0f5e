"""`apfed certs` and `apfed nodekey`: the deployment's CA, server certificate and SuperNode keys.

A SuperLink and SuperNodes using exactly these files run in tests/test_deployment.py (deploy.make_pki calls
apfed.pki)."""

import shutil
import subprocess

import pytest
from conftest import run_cli
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apfed.errors import ConfigError
from apfed.pki import load_authority, new_authority, server_certificate, write_certs, write_node_key
from apfed.preflight import check_certificate, check_private_key, check_private_to_owner


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
