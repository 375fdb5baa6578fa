"""Quorum TLS over real TLS in memory (twisted.test.iosim): mutual authentication and peer identity.

Certificates come from ``zktwist tls init``'s own code.  Each connection here
is a quorum/election link from a connecting server to server 1: the
connecting side first says which server it is (its sid on a line), and the
accepting side checks that claim against the certificate with
:func:`verify_peer_identity`, as the quorum services will.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from OpenSSL import SSL
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.internet import ssl
from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient

from zktwist.cli.tls import cert_pem, init_tls, key_pem, make_server_cert
from zktwist.config import from_text
from zktwist.quorum.tls import (
    PeerIdentityError,
    QuorumTLS,
    QuorumTLSError,
    certificate_server_ids,
    server_name,
    verify_peer_identity,
)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    good = tmp_path_factory.mktemp("tls")
    init_tls(str(good), [1, 2, 3])
    rogue = tmp_path_factory.mktemp("rogue")        # another CA, same server names
    init_tls(str(rogue), [1, 2])
    # Odd certificates from the good CA: a wildcard, two servers in one, no names.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    ca_key: Any = serialization.load_pem_private_key((good / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((good / "ca.pem").read_bytes())
    for label, names in (("wild", ["*.zktwist"]), ("both", ["server2.zktwist", "server3.zktwist"]),
                         ("nameless", []), ("host", ["localhost"])):
        key, cert = make_server_cert(ca_key, ca_cert, 0, names=names)
        (good / ("%s.key" % label)).write_bytes(key_pem(key))
        (good / ("%s.pem" % label)).write_bytes(cert_pem(cert))
    return {"good": good, "rogue": rogue}


def tls(d: Path, name: str, sid: Optional[int] = None, ca: Optional[Path] = None) -> QuorumTLS:
    return QuorumTLS(str(d / ("%s.key" % name)), str(d / ("%s.pem" % name)),
                     str(ca or d / "ca.pem"), sid)


class Gate(Protocol):
    """Accepting side: the first line is the peer's claimed sid; admit it only if its cert agrees."""

    def __init__(self) -> None:
        self.buf = b""
        self.admitted: Optional[int] = None
        self.refused: Optional[PeerIdentityError] = None
        self.lost: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        if b"\n" not in self.buf or self.admitted is not None:
            return
        claimed = int(self.buf.split(b"\n", 1)[0])
        try:
            verify_peer_identity(self.transport, claimed)
        except PeerIdentityError as e:
            self.refused = e
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.admitted = claimed
        self.transport.write(b"welcome %d\n" % claimed)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class Peer(Protocol):
    """Connecting side: says which server it is, collects the answer."""

    def __init__(self, claim: int) -> None:
        self.claim = claim
        self.received = b""
        self.lost: Optional[Failure] = None

    def connectionMade(self) -> None:
        self.transport.write(b"%d\n" % self.claim)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


def link(server_options: Any, client_options: Any, claim: int) -> Tuple[Peer, Gate, Any, IOPump]:
    clock = Clock()
    gates: List[Gate] = []
    peers: List[Peer] = []

    def gate() -> Gate:
        gates.append(Gate())
        return gates[-1]

    def peer() -> Peer:
        peers.append(Peer(claim))
        return peers[-1]

    server_f = TLSMemoryBIOFactory(server_options, False, ServerFactory.forProtocol(gate),
                                   clock=clock)
    client_f = TLSMemoryBIOFactory(client_options, True, ClientFactory.forProtocol(peer),
                                   clock=clock)
    client, server, pump = connectedServerAndClient(
        lambda: server_f.buildProtocol(None), lambda: client_f.buildProtocol(None),
        greet=False, clock=clock)
    pump.flush()
    return peers[0], gates[0], client, pump


def is_tls_failure(reason: Optional[Failure]) -> bool:
    return reason is not None and reason.check(SSL.Error) is not None


def test_good_pair_connects_both_ways_authenticated(dirs: Dict[str, Path]) -> None:
    one, two = tls(dirs["good"], "server1", 1), tls(dirs["good"], "server2", 2)
    peer, gate, client, _ = link(one.quorum_server_options(), two.quorum_client_options(1), 2)
    assert gate.admitted == 2 and gate.refused is None
    assert peer.received == b"welcome 2\n" and peer.lost is None
    # Each side holds the other's certificate, naming the other's id.
    assert certificate_server_ids(client.getPeerCertificate()) == {1}
    assert certificate_server_ids(gate.transport) == {2}
    # The election link uses the same material and checks.
    peer, gate, _, _ = link(one.election_server_options(),
                            tls(dirs["good"], "server3", 3).election_client_options(1), 3)
    assert gate.admitted == 3 and peer.received == b"welcome 3\n"


def test_peer_with_a_certificate_for_another_id_is_refused(dirs: Dict[str, Path]) -> None:
    one, three = tls(dirs["good"], "server1", 1), tls(dirs["good"], "server3")
    with capturedLogs() as events:
        peer, gate, _, _ = link(one.server_options(), three.client_options(1), 2)
    assert gate.admitted is None
    assert str(gate.refused) == ("peer claiming to be server 2 refused: its certificate names "
                                 "server3.zktwist, not server2.zktwist (VerificationError)")
    assert peer.received == b"" and peer.lost is not None
    assert [e["log_format"] for e in events if e.get("sid") == 2] == [
        "quorum TLS: refused a peer claiming to be server {sid}: {why}"]


@pytest.mark.parametrize("label, why", [
    # service_identity itself refuses a wildcard over two labels.
    ("wild", "its certificate names *.zktwist, not server2.zktwist (CertificateError)"),
    ("both", "its certificate names server2.zktwist, server3.zktwist; a quorum certificate "
             "names exactly one server"),
    ("nameless", "its certificate names no DNS names, not server2.zktwist (CertificateError)"),
    ("host", "its certificate names localhost, not server2.zktwist (VerificationError)"),
])
def test_odd_certificates_from_the_right_ca_are_refused(dirs: Dict[str, Path], label: str,
                                                         why: str) -> None:
    one, odd = tls(dirs["good"], "server1", 1), tls(dirs["good"], label)
    _, gate, _, _ = link(one.server_options(), odd.client_options(1), 2)
    assert gate.admitted is None
    assert str(gate.refused) == "peer claiming to be server 2 refused: " + why


def test_peer_from_another_ca_is_refused(dirs: Dict[str, Path]) -> None:
    one = tls(dirs["good"], "server1", 1)
    rogue_two = tls(dirs["rogue"], "server2", 2)     # right name, wrong CA
    peer, gate, _, _ = link(one.server_options(), rogue_two.client_options(1), 2)
    assert gate.admitted is None and gate.refused is None   # never got past the handshake
    assert gate.buf == b""
    assert is_tls_failure(gate.lost) and is_tls_failure(peer.lost)
    # And the other way: connecting to an impostor of server 1.
    rogue_one, two = tls(dirs["rogue"], "server1", 1), tls(dirs["good"], "server2", 2)
    peer, gate, _, _ = link(rogue_one.server_options(), two.client_options(1), 2)
    assert gate.buf == b"" and gate.admitted is None
    assert is_tls_failure(peer.lost)


def test_peer_without_a_certificate_is_refused(dirs: Dict[str, Path]) -> None:
    one = tls(dirs["good"], "server1", 1)
    ca = tls(dirs["good"], "server2").ca
    anonymous = optionsForClientTLS(server_name(1), trustRoot=trustRootFromCertificates([ca]))
    peer, gate, _, _ = link(one.server_options(), anonymous, 2)
    assert gate.buf == b"" and gate.admitted is None
    assert is_tls_failure(gate.lost) and is_tls_failure(peer.lost)


def test_connecting_side_checks_it_reached_the_server_it_meant(dirs: Dict[str, Path]) -> None:
    # Server 2's (valid) certificate answers where server 1 was expected.
    two, three = tls(dirs["good"], "server2", 2), tls(dirs["good"], "server3", 3)
    peer, gate, _, _ = link(two.server_options(), three.client_options(1), 3)
    assert gate.admitted is None and gate.buf == b""
    assert peer.lost is not None and peer.received == b""


def test_verify_peer_identity_inputs(dirs: Dict[str, Path]) -> None:
    from cryptography import x509
    from OpenSSL import crypto
    pem = (dirs["good"] / "server2.pem").read_bytes()
    c = x509.load_pem_x509_certificate(pem)
    for form in (c, crypto.X509.from_cryptography(c), tls(dirs["good"], "server2").cert,
                 ssl.Certificate(crypto.X509.from_cryptography(c))):
        verify_peer_identity(form, 2)
        with pytest.raises(PeerIdentityError):
            verify_peer_identity(form, 1)
    with pytest.raises(PeerIdentityError, match="presented no certificate"):
        verify_peer_identity(None, 2)
    with pytest.raises(PeerIdentityError, match="expected a TLS connection"):
        verify_peer_identity(object(), 2)
    assert server_name(7) == "server7.zktwist"


def test_own_material_is_checked_at_load(dirs: Dict[str, Path], tmp_path: Path) -> None:
    good = dirs["good"]
    with pytest.raises(QuorumTLSError, match=r"^ssl.quorum.certFile: .*server2.pem names "
                       r"server2.zktwist, but this is server 1 \(expected server1.zktwist"):
        tls(good, "server2", 1)
    with pytest.raises(QuorumTLSError, match=r"^ssl.quorum.keyFile: .*server1.key is not the key"):
        QuorumTLS(str(good / "server1.key"), str(good / "server2.pem"), str(good / "ca.pem"))
    with pytest.raises(QuorumTLSError, match=r"^ssl.quorum.caFile: .*nope.pem: No such file"):
        QuorumTLS(str(good / "server1.key"), str(good / "server1.pem"), str(tmp_path / "nope.pem"))
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(QuorumTLSError, match=r"^ssl.quorum.keyFile: .*junk.pem holds no unencrypted PEM"):
        QuorumTLS(str(tmp_path / "junk.pem"), str(good / "server1.pem"), str(good / "ca.pem"))
    # One PEM file with key and certificate (Apache ZooKeeper's keyStore.type=PEM).
    both = tmp_path / "both.pem"
    both.write_bytes((good / "server1.key").read_bytes() + (good / "server1.pem").read_bytes())
    assert QuorumTLS(str(both), str(both), str(good / "ca.pem"), 1).server_ids == {1}


def test_from_config(dirs: Dict[str, Path], tmp_path: Path) -> None:
    good = dirs["good"]
    (tmp_path / "myid").write_text("3")
    base = ("dataDir=%s\ninitLimit=5\nsyncLimit=2\nserver.1=127.0.0.1:2888:3888\n"
            "server.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890\n" % tmp_path)
    assert QuorumTLS.from_config(from_text(base + "sslQuorum=false\n")) is None
    cfg = from_text(base + "ssl.quorum.keyFile=%s/server3.key\nssl.quorum.certFile=%s/server3.pem\n"
                    "ssl.quorum.caFile=%s/ca.pem\n" % (good, good, good))
    q = QuorumTLS.from_config(cfg)
    assert q is not None and q.server_ids == {3}
    cfg = from_text(base + "ssl.quorum.keyFile=%s/server1.key\nssl.quorum.certFile=%s/server1.pem\n"
                    "ssl.quorum.caFile=%s/ca.pem\n" % (good, good, good))
    with pytest.raises(QuorumTLSError, match="but this is server 3"):
        QuorumTLS.from_config(cfg)
