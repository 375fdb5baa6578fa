"""``zktwist tls init``: a CA and one key + certificate per ensemble member, for quorum TLS.

Identity scheme (checked by :mod:`zktwist.quorum.tls`): member N's certificate
carries the DNS subjectAltName ``server<N>.zktwist`` and nothing else.  A DNS
name, not an IP address or a URI: the members of a loopback (or NATed)
ensemble share addresses, so the name must say *which server*, and a DNS-ID
is what ``service_identity`` and Twisted's ``optionsForClientTLS`` verify
natively (no custom matching code on the connecting side).  ``.zktwist`` is
not a real top-level domain, so the name cannot collide with a host name a
public CA would certify, and the CA these files create signs nothing else.

Files written to the output directory (keys 0600):

    ca.pem  ca.key              the ensemble's CA (keep ca.key off the servers if you like)
    server<N>.pem  server<N>.key   member N's certificate and private key

An existing ``ca.pem`` + ``ca.key`` is reused to sign certificates for members
that have none yet; no existing file is overwritten without ``--force`` (which
starts over with a new CA).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

# cryptography is imported where it is used: `zktwist <anything>` builds this
# command's parser, and should not pay for it.
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_DAYS = 3650
CA_CERT, CA_KEY = "ca.pem", "ca.key"


class TLSInitError(Exception):
    """What ``tls init`` refuses to do, as one line."""


def cert_file(sid: int) -> str:
    return "server%d.pem" % sid


def key_file(sid: int) -> str:
    return "server%d.key" % sid


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(days: int = DEFAULT_DAYS) -> Tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh CA key and self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    key = _new_key()
    serial = x509.random_serial_number()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zktwist"),
        # A distinct name per CA, so two ensembles' CAs are told apart in logs.
        x509.NameAttribute(NameOID.COMMON_NAME, "zktwist quorum CA %x" % (serial & 0xFFFFFFFF)),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, sid: int,
                     days: int = DEFAULT_DAYS,
                     names: Optional[Sequence[str]] = None,
                     ) -> Tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Member ``sid``'s key and certificate, signed by the CA.

    ``names`` overrides the DNS names (tests use it to make bad certificates).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from zktwist.quorum.tls import server_name
    key = _new_key()
    dns = list(names) if names is not None else [server_name(sid)]
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zktwist")]
                        + ([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])] if dns else []))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        # Every link is mutually authenticated: each member is a TLS server
        # (accepting) and a TLS client (connecting).
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: str, data: bytes, secret: bool, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    mode = 0o600 if secret else 0o644
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)   # also when --force rewrites a file made with looser bits
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def init_tls(out: str, sids: Sequence[int], force: bool = False,
             days: int = DEFAULT_DAYS) -> Dict[str, List[str]]:
    """Write the CA (unless reused) and each member's files into ``out``.

    Returns ``{"written": [...], "reused": [...]}`` (paths).  Raises
    :class:`TLSInitError` before writing anything if a file would be
    overwritten without ``force``.
    """
    if not sids:
        raise TLSInitError("no server ids given")
    ca_cert_path, ca_key_path = os.path.join(out, CA_CERT), os.path.join(out, CA_KEY)
    reuse_ca = not force and os.path.exists(ca_cert_path) and os.path.exists(ca_key_path)
    planned = [] if reuse_ca else [ca_cert_path, ca_key_path]
    for sid in sids:
        planned += [os.path.join(out, cert_file(sid)), os.path.join(out, key_file(sid))]
    existing = [p for p in planned if os.path.exists(p)]
    if existing and not force:
        raise TLSInitError("refusing to overwrite %s (use --force to start over with a new CA "
                           "and new certificates)" % ", ".join(existing))
    os.makedirs(out, mode=0o755, exist_ok=True)
    written: List[str] = []
    if reuse_ca:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        try:
            with open(ca_key_path, "rb") as f:
                loaded = serialization.load_pem_private_key(f.read(), password=None)
            with open(ca_cert_path, "rb") as f:
                ca_cert = x509.load_pem_x509_certificate(f.read())
        except (OSError, ValueError) as e:
            raise TLSInitError("cannot reuse the CA in %s: %s" % (out, e))
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise TLSInitError("cannot reuse the CA in %s: %s is not an EC key (written by "
                               "zktwist tls init)" % (out, ca_key_path))
        ca_key = loaded
    else:
        ca_key, ca_cert = make_ca(days)
        _write(ca_key_path, key_pem(ca_key), True, force)
        _write(ca_cert_path, cert_pem(ca_cert), False, force)
        written += [ca_cert_path, ca_key_path]
    for sid in sids:
        key, cert = make_server_cert(ca_key, ca_cert, sid, days)
        kp, cp = os.path.join(out, key_file(sid)), os.path.join(out, cert_file(sid))
        _write(kp, key_pem(key), True, force)
        _write(cp, cert_pem(cert), False, force)
        written += [cp, kp]
    return {"written": written, "reused": [ca_cert_path, ca_key_path] if reuse_ca else []}


def config_lines(out: str, sid: int) -> List[str]:
    return ["sslQuorum=true",
            "ssl.quorum.keyFile=%s" % os.path.join(out, key_file(sid)),
            "ssl.quorum.certFile=%s" % os.path.join(out, cert_file(sid)),
            "ssl.quorum.caFile=%s" % os.path.join(out, CA_CERT)]


def _parse_sids(text: str) -> List[int]:
    sids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            sid = int(part)
        except ValueError:
            raise TLSInitError("--servers: %r is not a server id" % part)
        if not 0 <= sid <= 255:
            raise TLSInitError("--servers: server ids are 0-255, got %d" % sid)
        if sid not in sids:
            sids.append(sid)
    return sids


def _from_config(path: str) -> Tuple[List[int], str]:
    """The ensemble's server ids, and the directory its ssl.quorum.caFile names (or "")."""
    from zktwist.config import ConfigError, load
    try:
        cfg = load(path, check_local=False)
    except ConfigError as e:
        raise TLSInitError(str(e))
    if not cfg.servers:
        raise TLSInitError("%s: no server.N lines: quorum TLS is for ensembles" % path)
    ca = cfg.ssl_quorum_ca_file
    return sorted(cfg.servers), os.path.dirname(ca) if ca else ""


def run(args: argparse.Namespace) -> int:
    try:
        sids: List[int] = []
        out = args.out or ""
        if args.config:
            sids, ca_dir = _from_config(args.config)
            out = out or ca_dir
            if not out:
                raise TLSInitError("%s sets no ssl.quorum.caFile: give --out DIR" % args.config)
        if args.servers:
            sids = _parse_sids(args.servers)
        if not sids:
            raise TLSInitError("give --config FILE (an ensemble's config) or --servers 1,2,3")
        if not out:
            raise TLSInitError("give --out DIR")
        if args.days <= 0:
            raise TLSInitError("--days: expected a positive number of days")
        done = init_tls(out, sids, force=args.force, days=args.days)
    except TLSInitError as e:
        sys.stderr.write("zktwist tls init: error: %s\n" % e)
        return 1
    if done["reused"]:
        print("Reused the CA %s (its key %s signed the new certificates)." % tuple(done["reused"]))
    print("Wrote %s." % ", ".join(done["written"]))
    print("Add to each member's config (member N's certificate names server<N>.zktwist):")
    for sid in sids:
        print()
        print("# server.%d (its dataDir/myid holds %d)" % (sid, sid))
        for line in config_lines(out, sid):
            print(line)
    return 0


def add_parsers(sub: Any) -> None:
    """Add `tls init` to the `zktwist` command (sub: its subparsers action)."""
    t = sub.add_parser("tls", help="TLS certificates for an ensemble's quorum links")
    tsub = t.add_subparsers(dest="tls_command", metavar="COMMAND")

    def _help(args: argparse.Namespace) -> int:
        t.print_help(sys.stderr)
        return 2
    t.set_defaults(func=_help)
    i = tsub.add_parser(
        "init", help="write a CA and a key + certificate per server",
        description="Write a CA (ca.pem, ca.key) and, per server id N, serverN.key and "
                    "serverN.pem, a certificate naming server<N>.zktwist, then print the "
                    "config lines to add. An existing CA in DIR is reused; nothing is "
                    "overwritten without --force.")
    i.add_argument("--config", metavar="FILE",
                   help="an ensemble config: its server.N ids, and the directory of its "
                        "ssl.quorum.caFile as the default --out")
    i.add_argument("--servers", metavar="IDS", help="server ids, e.g. 1,2,3")
    i.add_argument("--out", metavar="DIR", help="where to write the files")
    i.add_argument("--days", type=int, default=DEFAULT_DAYS,
                   help="validity in days (default %d)" % DEFAULT_DAYS)
    i.add_argument("--force", action="store_true",
                   help="start over: a new CA and certificates, overwriting existing files")
    i.set_defaults(func=run)
