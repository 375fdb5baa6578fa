"""ACL schemes (world, auth, digest, ip, super) as Apache ZooKeeper 3.8 checks them."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Iterable, List, Optional, Sequence, Tuple

from zktwist.proto.consts import Perms

Id = Tuple[str, str]  # (scheme, id)
ACL = Tuple[int, str, str]

# Schemes whose credentials ``auth`` ACLs expand to (isAuthenticated providers).
AUTHENTICATED_SCHEMES = frozenset(("digest",))
PROVIDERS = frozenset(("digest", "ip"))


class InvalidACL(Exception):
    pass


class NullACLId(Exception):
    """An ACL with a null id: Java throws a NullPointerException (MARSHALLINGERROR)."""


_JAVA_INT = re.compile(r"[+-]?[0-9]+\Z")


def java_parse_int(text: str) -> Optional[int]:
    """``Integer.parseInt``: optional sign, ASCII digits, no spaces; None when Java throws."""
    if not _JAVA_INT.match(text):
        return None
    value = int(text)
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        return None
    return value


def digest(user_password: str) -> str:
    """``user:BASE64(SHA1("user:password"))`` (DigestAuthenticationProvider.generateDigest)."""
    user = user_password.split(":", 1)[0]
    sha = hashlib.sha1(user_password.encode("utf-8")).digest()
    return user + ":" + base64.b64encode(sha).decode("ascii")


def _java_split_colon_count(value: str) -> int:
    """len(value.split(":")) as Java computes it (trailing empty strings dropped)."""
    parts = value.split(":")
    while parts and parts[-1] == "":
        parts.pop()
    return len(parts)


def _v4_bytes(addr: str) -> Optional[int]:
    """IPAuthenticationProvider.v4addr2Bytes as one 32-bit number (None when Java returns null)."""
    parts = addr.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        v = java_parse_int(part)
        if v is None or not 0 <= v <= 255:
            return None
        value = (value << 8) | v
    return value


def _parse_ip_acl(expr: str) -> Optional[Tuple[int, int]]:
    """(masked address, mask) of an ip ACL id, or None when it is invalid."""
    addr, slash, bits_text = expr.partition("/")
    base = _v4_bytes(addr)
    if base is None:
        return None
    bits = 32
    if slash:
        parsed = java_parse_int(bits_text)
        if parsed is None or not 0 <= parsed <= 32:
            return None
        bits = parsed
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return base & mask, mask


def is_valid_id(scheme: str, ident: str) -> bool:
    if scheme == "digest":
        return _java_split_colon_count(ident) == 2
    if scheme == "ip":
        return _parse_ip_acl(ident) is not None
    return False


def fixup_acl(acls: Optional[Sequence[ACL]], auth_ids: Sequence[Id]) -> Tuple[ACL, ...]:
    """Validate and expand a create/setACL ACL list (PrepRequestProcessor.fixupACL)."""
    if not acls:
        raise InvalidACL()
    unique: List[ACL] = []
    for a in acls:
        if a not in unique:
            unique.append(a)
    out: List[ACL] = []
    for perms, scheme, ident in unique:
        if scheme is None:
            raise InvalidACL()
        if ident is None and (scheme == "world" or scheme in PROVIDERS):
            raise NullACLId()
        if scheme == "world" and ident == "anyone":
            out.append((perms, scheme, ident))
        elif scheme == "auth":
            found = False
            for s, i in auth_ids:
                if s in AUTHENTICATED_SCHEMES:
                    found = True
                    out.append((perms, s, i))
            if not found:
                raise InvalidACL()
        else:
            if scheme not in PROVIDERS or ident is None or not is_valid_id(scheme, ident):
                raise InvalidACL()
            out.append((perms, scheme, ident))
    return tuple(out)


def _ip_matches(client: str, expr: str) -> bool:
    parsed = _parse_ip_acl(expr)
    if parsed is None:
        return False
    base, mask = parsed
    remote = _v4_bytes(client)
    return remote is not None and (remote & mask) == base


def check(acl: Sequence[ACL], perm: int, auth_ids: Sequence[Id], skip_acl: bool = False) -> bool:
    """True when ``auth_ids`` may do ``perm`` on a node with ``acl`` (ZooKeeperServer.checkACL)."""
    if skip_acl or not acl:
        return True
    for scheme, _ in auth_ids:
        if scheme == "super":
            return True
    for perms, scheme, ident in acl:
        if not perms & perm:
            continue
        if scheme == "world" and ident == "anyone":
            return True
        if scheme == "digest":
            for s, i in auth_ids:
                if s == "digest" and i == ident:
                    return True
        elif scheme == "ip":
            for s, i in auth_ids:
                if s == "ip" and _ip_matches(i, ident):
                    return True
    return False


def mask_digests(acl: Iterable[ACL]) -> List[ACL]:
    """getACL without ADMIN: digest ids shown as ``user:x``."""
    out = []
    for perms, scheme, ident in acl:
        if scheme == "digest":
            ident = ident.split(":", 1)[0] + ":x" if ":" in ident else ident
        out.append((perms, scheme, ident))
    return out


def _java_string_hash(value: str) -> int:
    h = 0
    raw = value.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(raw), 2):
        h = (31 * h + ((raw[i] << 8) | raw[i + 1])) & 0xFFFFFFFF
    return h


def _java_id_hash(ident: Id) -> int:
    """``Id.hashCode()`` as jute generates it (17, then 37 * result + field hash)."""
    result = 17
    result = (37 * result + _java_string_hash(ident[0])) & 0xFFFFFFFF
    result = (37 * result + _java_string_hash(ident[1])) & 0xFFFFFFFF
    return result


def java_set_order(ids: Sequence[Id]) -> List[Id]:
    """The order a ``ConcurrentHashMap``-backed set of Ids iterates in (ServerCnxn.authInfo).

    It decides the order of whoAmI's answer and of ACL entries that ``auth``
    expands to, which clients see.  Ids in one bin keep insertion order.
    """
    n = 16
    while len(ids) >= n - n // 4:
        n *= 2
    def bin_of(ident: Id) -> int:
        h = _java_id_hash(ident)
        return ((h ^ (h >> 16)) & 0x7FFFFFFF) & (n - 1)
    return [ident for _, _, ident in sorted((bin_of(i), k, i) for k, i in enumerate(ids))]


def client_infos(auth_ids: Sequence[Id]) -> List[Tuple[str, Optional[str]]]:
    """whoAmI: (scheme, user) pairs; digest users are the part before ':'.

    A scheme with no provider (``super``) has no user name: null on the wire.
    """
    out: List[Tuple[str, Optional[str]]] = []
    for scheme, ident in auth_ids:
        user: Optional[str] = ident
        if scheme == "digest":
            user = ident.split(":", 1)[0]
        elif scheme not in PROVIDERS:
            user = ""  # no provider: AuthUtil.getUser is null, sent as ""
        out.append((scheme, user))
    return out
