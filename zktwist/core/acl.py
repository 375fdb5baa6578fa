"""ACL schemes (world, auth, digest, ip, super) as Apache ZooKeeper 3.8 checks them."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from typing import Iterable, List, Optional, Sequence, Tuple

from zktwist.proto.consts import Perms

Id = Tuple[str, str]  # (scheme, id)
ACL = Tuple[int, str, str]

# Schemes whose credentials ``auth`` ACLs expand to (isAuthenticated providers).
AUTHENTICATED_SCHEMES = frozenset(("digest",))
PROVIDERS = frozenset(("digest", "ip"))


class InvalidACL(Exception):
    pass


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


def _parse_ip_acl(expr: str) -> Optional[ipaddress.IPv4Network]:
    addr, _, bits = expr.partition("/")
    try:
        ip = ipaddress.IPv4Address(addr)
    except ValueError:
        return None
    if bits:
        try:
            n = int(bits)
        except ValueError:
            return None
        if n < 0 or n > 32:
            return None
    else:
        n = 32
    return ipaddress.IPv4Network((int(ip) & (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF, n))


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
    net = _parse_ip_acl(expr)
    if net is None:
        return False
    try:
        return ipaddress.IPv4Address(client) in net
    except ValueError:
        return False


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
