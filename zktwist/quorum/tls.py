"""TLS for the quorum and election links (shell side: reads PEM files, builds pyOpenSSL contexts).

Unlike the rest of ``zktwist/quorum/`` this module is not pure; only the
services import it.

Both links are mutually authenticated against the ensemble's CA
(``ssl.quorum.caFile``), and a peer must prove *which server* it is: member
N's certificate carries the DNS subjectAltName ``server<N>.zktwist`` (see
:mod:`zktwist.cli.tls`, which writes such certificates).  Addresses prove
nothing (a loopback ensemble shares 127.0.0.1), so:

- connecting to server N, :meth:`QuorumTLS.client_options` makes the handshake
  itself fail unless the accepting side presents a certificate for
  ``server<N>.zktwist`` (Twisted's ``optionsForClientTLS`` checks it with
  ``service_identity``), and presents our own certificate;
- accepting, :meth:`QuorumTLS.server_options` requires a client certificate
  from the CA, and once the connecting peer says which server it is (the first
  message of a quorum or election connection carries its sid), the service
  calls :func:`verify_peer_identity` with the transport and the claimed sid,
  and drops the connection if it raises.
"""

from __future__ import annotations

import re
from typing import Any, Dict, FrozenSet, List, NoReturn, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
import OpenSSL
from OpenSSL import crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet import endpoints, ssl
from twisted.logger import Logger

DOMAIN = "zktwist"
_NAME = re.compile(r"^server(0|[1-9][0-9]{0,2})\.zktwist$")
_MIN_TLS = ssl.TLSVersion.TLSv1_2
_PYOPENSSL: Tuple[int, ...] = tuple(int(p) for p in OpenSSL.__version__.split(".")[:2])

log = Logger()


def server_name(sid: int) -> str:
    """The DNS name member ``sid``'s certificate carries: ``server<sid>.zktwist``."""
    return "server%d.%s" % (sid, DOMAIN)


class PeerIdentityError(Exception):
    """A peer's certificate does not name the server it claims to be."""


class QuorumTLSError(Exception):
    """This server's own key, certificate or CA cannot be used (names the file)."""


def _dns_names(cert: x509.Certificate) -> List[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]


def certificate_server_ids(cert: Any) -> FrozenSet[int]:
    """The server ids a certificate names (``server<N>.zktwist`` DNS subjectAltNames)."""
    c = _as_cryptography(cert)
    if c is None:
        return frozenset()
    ids = set()
    for name in _dns_names(c):
        m = _NAME.match(name)
        if m:
            ids.add(int(m.group(1)))
    return frozenset(ids)


def _as_cryptography(obj: Any) -> Optional[x509.Certificate]:
    """The peer certificate of a connection/transport, or the certificate itself."""
    if obj is None or isinstance(obj, x509.Certificate):
        return obj
    if isinstance(obj, crypto.X509):
        return obj.to_cryptography()
    if isinstance(obj, ssl.Certificate):
        return obj.original.to_cryptography()
    for getter in ("getPeerCertificate", "get_peer_certificate"):
        # Twisted's TLS transports and pyOpenSSL's SSL.Connection.
        fn = getattr(obj, getter, None)
        if fn is not None:
            return _as_cryptography(fn())
    raise TypeError("expected a TLS connection, transport or certificate, got %r" % (obj,))


def verify_peer_identity(connection_or_cert: Any, claimed_sid: int) -> None:
    """Accept the peer only if its certificate names exactly the server id it claims.

    ``connection_or_cert``: a Twisted TLS transport, a pyOpenSSL
    ``SSL.Connection``, or a certificate (pyOpenSSL, Twisted or cryptography).
    The chain itself was verified against the CA during the handshake.
    Raises :class:`PeerIdentityError` (and logs why) for anything else: no
    certificate, a certificate for another server, one naming several servers
    or a wildcard.
    """
    try:
        cert = _as_cryptography(connection_or_cert)
    except TypeError as e:
        _refuse(claimed_sid, str(e))
    if cert is None:
        _refuse(claimed_sid, "it presented no certificate")
    expected = server_name(claimed_sid)
    try:
        verify_certificate_hostname(cert, expected)
    except (VerificationError, CertificateError) as e:
        _refuse(claimed_sid, "its certificate names %s, not %s (%s)"
                % (", ".join(_dns_names(cert)) or "no DNS names", expected, type(e).__name__))
    # service_identity matches wildcards; a quorum certificate names one server.
    names = _dns_names(cert)
    if any("*" in n for n in names) or certificate_server_ids(cert) != {claimed_sid}:
        _refuse(claimed_sid, "its certificate names %s; a quorum certificate names exactly "
                "one server" % ", ".join(names))


def _refuse(sid: int, why: str) -> NoReturn:
    log.warn("quorum TLS: refused a peer claiming to be server {sid}: {why}", sid=sid, why=why)
    raise PeerIdentityError("peer claiming to be server %d refused: %s" % (sid, why))


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise QuorumTLSError("%s: %s: %s" % (key, path, e.strerror))


class QuorumTLS:
    """This server's quorum TLS material, and the context factories built from it."""

    def __init__(self, key_file: str, cert_file: str, ca_file: str,
                 my_sid: Optional[int] = None) -> None:
        key_pem = _read(key_file, "ssl.quorum.keyFile")
        cert_pem = key_pem if cert_file == key_file else _read(cert_file, "ssl.quorum.certFile")
        ca_pem = _read(ca_file, "ssl.quorum.caFile")
        try:
            self.key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise QuorumTLSError("ssl.quorum.keyFile: %s holds no unencrypted PEM private key"
                                 % key_file)
        try:
            # The first certificate in the file (Apache's PEM key store may follow it with
            # its chain).
            self.cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise QuorumTLSError("ssl.quorum.certFile: %s holds no PEM certificate" % cert_file)
        try:
            ca = x509.load_pem_x509_certificate(ca_pem)
        except ValueError:
            raise QuorumTLSError("ssl.quorum.caFile: %s holds no PEM certificate" % ca_file)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if (self.cert.public_key().public_bytes(serialization.Encoding.DER, spki)
                != self.key.public_key().public_bytes(serialization.Encoding.DER, spki)):
            raise QuorumTLSError("ssl.quorum.keyFile: %s is not the key of %s"
                                 % (key_file, cert_file))
        self.server_ids = certificate_server_ids(self.cert)
        if my_sid is not None and self.server_ids != {my_sid}:
            # A member started with another member's files would be refused by
            # every peer; say so at start-up instead.
            raise QuorumTLSError(
                "ssl.quorum.certFile: %s names %s, but this is server %d (expected %s; "
                "zktwist tls init writes one certificate per server)"
                % (cert_file, ", ".join(server_name(n) for n in sorted(self.server_ids))
                   or "no server", my_sid, server_name(my_sid)))
        self.ca = ssl.Certificate(crypto.X509.from_cryptography(ca))
        self._trust = ssl.trustRootFromCertificates([self.ca])
        self._server_options: Optional[ssl.CertificateOptions] = None

    @classmethod
    def from_config(cls, config: Any) -> Optional["QuorumTLS"]:
        """The ensemble's TLS from a :class:`zktwist.config.ServerConfig`; None if sslQuorum=false."""
        if not config.ssl_quorum:
            return None
        return cls(config.ssl_quorum_key_file, config.ssl_quorum_cert_file,
                   config.ssl_quorum_ca_file, config.my_id)

    def server_options(self) -> ssl.CertificateOptions:
        """Accepting side of quorum and election links: a CA-signed client certificate required.

        Which server the client is remains to be checked against its claim
        with :func:`verify_peer_identity`.
        """
        if self._server_options is None:
            self._server_options = ssl.CertificateOptions(
                **self._own(),
                trustRoot=self._trust,
                raiseMinimumTo=_MIN_TLS,
            )
        return self._server_options

    def client_options(self, sid: int) -> Any:
        """Connecting side to server ``sid``: it must present a certificate for ``server<sid>.zktwist``."""
        return ssl.optionsForClientTLS(
            server_name(sid), trustRoot=self._trust,
            # Our certificate, as clientCertificate= would give it, minus deprecations.
            extraCertificateOptions=dict(self._own(), raiseMinimumTo=_MIN_TLS))

    def _own(self) -> Dict[str, Any]:
        """Our key and certificate for pyOpenSSL: cryptography objects from 24.3 on
        (passing its own PKey/X509 is deprecated there), its own types before."""
        if _PYOPENSSL >= (24, 3):
            return {"privateKey": self.key, "certificate": self.cert}
        return {"privateKey": crypto.PKey.from_cryptography_key(self.key),  # type: ignore
                "certificate": crypto.X509.from_cryptography(self.cert)}

    # Quorum (Zab) and election links use the same material and checks.
    quorum_server_options = election_server_options = server_options
    quorum_client_options = election_client_options = client_options

    def server_endpoint(self, reactor: Any, port: int, interface: str = "") -> Any:
        return endpoints.SSL4ServerEndpoint(reactor, port, self.server_options(),
                                            interface=interface)

    def client_endpoint(self, reactor: Any, host: str, port: int, sid: int,
                        timeout: float = 5.0) -> Any:
        return endpoints.wrapClientTLS(self.client_options(sid),
                                       endpoints.HostnameEndpoint(reactor, host, port,
                                                                  timeout=timeout))
