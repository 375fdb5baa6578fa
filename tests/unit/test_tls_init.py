"""``zktwist tls init``: the files it writes, the identity each certificate carries, its refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import List

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname

from zktwist.cli.main import main
from zktwist.config import load

ROOT = Path(__file__).resolve().parents[2]


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def verifies(ca: Path, leaf: Path) -> bool:
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(cert(ca)))
    ctx = crypto.X509StoreContext(store, crypto.X509.from_cryptography(cert(leaf)))
    try:
        ctx.verify_certificate()
        return True
    except crypto.X509StoreContextError:
        return False


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple:
    code = main(["tls", "init", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_servers_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    code, stdout, err = run(capsys, "--servers", "1,2,3", "--out", str(out))
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["ca.key", "ca.pem", "server1.key", "server1.pem",
                                       "server2.key", "server2.pem", "server3.key", "server3.pem"]
    for name in os.listdir(out):
        mode = stat.S_IMODE(os.stat(out / name).st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), name
    ca = cert(out / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for n in (1, 2, 3):
        c = cert(out / ("server%d.pem" % n))
        assert c.issuer == ca.subject
        assert verifies(out / "ca.pem", out / ("server%d.pem" % n))
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["server%d.zktwist" % n]
        eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        # The identity is checkable with service_identity, and names only this server.
        verify_certificate_hostname(c, "server%d.zktwist" % n)
        other = 1 + n % 3
        with pytest.raises(VerificationError):
            verify_certificate_hostname(c, "server%d.zktwist" % other)
        # The key file holds the certificate's key.
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, (out / ("server%d.key" % n)).read_bytes())
        assert key.to_cryptography_key().public_key().public_numbers() == \
            c.public_key().public_numbers()  # type: ignore[union-attr]
    # The lines to add, per server.
    for n in (1, 2, 3):
        assert "ssl.quorum.keyFile=%s/server%d.key" % (out, n) in stdout
        assert "ssl.quorum.certFile=%s/server%d.pem" % (out, n) in stdout
    assert stdout.count("ssl.quorum.caFile=%s/ca.pem" % out) == 3
    assert stdout.count("sslQuorum=true") == 3


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    assert run(capsys, "--servers", "1,2", "--out", str(out))[0] == 0
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    code, stdout, err = run(capsys, "--servers", "2,3", "--out", str(out))
    assert code == 1
    assert err == ("zktwist tls init: error: refusing to overwrite %s/server2.pem, %s/server2.key "
                   "(use --force to start over with a new CA and new certificates)\n" % (out, out))
    # Nothing was written, not even server3's files.
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before


def test_reuses_the_ca_for_new_servers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    assert run(capsys, "--servers", "1,2,3", "--out", str(out))[0] == 0
    ca = (out / "ca.pem").read_bytes()
    code, stdout, _ = run(capsys, "--servers", "4", "--out", str(out))
    assert code == 0 and "Reused the CA" in stdout
    assert (out / "ca.pem").read_bytes() == ca
    assert verifies(out / "ca.pem", out / "server4.pem")


def test_force_starts_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    assert run(capsys, "--servers", "1", "--out", str(out))[0] == 0
    old_ca, old_key = (out / "ca.pem").read_bytes(), (out / "server1.key").read_bytes()
    os.chmod(out / "server1.key", 0o644)
    assert run(capsys, "--servers", "1", "--out", str(out), "--force")[0] == 0
    assert (out / "ca.pem").read_bytes() != old_ca
    assert (out / "server1.key").read_bytes() != old_key
    assert stat.S_IMODE(os.stat(out / "server1.key").st_mode) == 0o600
    assert verifies(out / "ca.pem", out / "server1.pem")


def test_from_an_ensemble_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The example config's ssl.quorum.caFile directory is the default --out, and
    # the files land where all three example configs look for them.
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run(capsys, "--config", str(ROOT / "etc" / "zktwist-3node-1.cfg"))
    assert code == 0, err
    for n in (1, 2, 3):
        c = load(str(ROOT / "etc" / ("zktwist-3node-%d.cfg" % n)), check_local=False)
        for path in (c.ssl_quorum_key_file, c.ssl_quorum_cert_file, c.ssl_quorum_ca_file):
            assert (tmp_path / path).is_file(), path
        verify_certificate_hostname(cert(tmp_path / c.ssl_quorum_cert_file), "server%d.zktwist" % n)
    assert sorted(os.listdir(tmp_path / "var" / "tls")) == [
        "ca.key", "ca.pem", "server1.key", "server1.pem", "server2.key", "server2.pem",
        "server3.key", "server3.pem"]


def test_config_with_observer_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("dataDir=%s\ninitLimit=5\nsyncLimit=2\nsslQuorum=false\n"
                   "server.1=h1:2888:3888\nserver.5=h2:2888:3888\nserver.7=h3:2888:3888:observer\n"
                   % tmp_path)
    code, stdout, err = run(capsys, "--config", str(cfg), "--out", str(tmp_path / "t"))
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "t")) == [
        "ca.key", "ca.pem", "server1.key", "server1.pem", "server5.key", "server5.pem",
        "server7.key", "server7.pem"]


@pytest.mark.parametrize("argv, message", [
    ([], "give --config FILE (an ensemble's config) or --servers 1,2,3"),
    (["--servers", "1,2"], "give --out DIR"),
    (["--servers", "1,x", "--out", "d"], "--servers: 'x' is not a server id"),
    (["--servers", "300", "--out", "d"], "--servers: server ids are 0-255, got 300"),
    (["--servers", "1", "--out", "d", "--days", "0"], "--days: expected a positive number of days"),
])
def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: List[str],
                      message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err == "zktwist tls init: error: %s\n" % message
    assert os.listdir(tmp_path) == []


def test_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("dataDir=%s\n" % tmp_path)
    code, _, err = run(capsys, "--config", str(cfg), "--out", str(tmp_path / "t"))
    assert code == 1 and "no server.N lines" in err
    cfg.write_text("dataDir=%s\ninitLimit=5\nsyncLimit=2\nsslQuorum=false\n"
                   "server.1=h1:2888:3888\nserver.2=h2:2888:3888\n" % tmp_path)
    code, _, err = run(capsys, "--config", str(cfg))
    assert code == 1 and "sets no ssl.quorum.caFile: give --out DIR" in err
    cfg.write_text("dataDir=%s\nserver.1=h1:2888\n" % tmp_path)
    code, _, err = run(capsys, "--config", str(cfg), "--out", str(tmp_path / "t"))
    assert code == 1 and err.startswith("zktwist tls init: error: %s:2: server.1:" % cfg)
