"""The webhook address guard: which URLs may receive webhooks (SSRF protection).

A webhook URL is a tenant's input that the stack fetches from inside its network, so every address
its host resolves to is checked: loopback (allowed only in local mode), cloud metadata, private,
link-local, shared, reserved and other non-public ranges are refused, including their IPv6 wrappings
(IPv4-mapped, 6to4, NAT64). Plain http is allowed only for loopback in local mode. Delivery
(talkstack/pipeline/webhooks.py) then connects to the checked address itself, never re-resolving.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = [
    "METADATA_ADDRESSES",
    "IPAddress",
    "Resolver",
    "WebhookRefused",
    "check_webhook_target",
    "short_error",
]

# The metadata endpoints of AWS (IPv4 and IPv6), GCP / Azure / OCI (same IPv4) and Alibaba Cloud.
# Each also falls in a refused range; they are listed so the refusal says what was being reached.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
"""`socket.getaddrinfo`, or a stand-in with the same call shape (tests use one to avoid DNS)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(Exception):
    """The webhook target is not allowed (bad URL, unresolvable, or a non-public address)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if any: it is where the packets really go."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _refusal(addr: IPAddress, allow_loopback: bool) -> str | None:
    """Why `addr` may not receive webhooks, or None if it may. Metadata is checked first so it is
    named as such (and refused even in local mode); loopback before private, which contains it."""
    if addr in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if addr.is_loopback:
        return None if allow_loopback else "is a loopback address (allowed only in local mode)"
    checks = (
        (addr.is_unspecified, "is the unspecified address"),
        (addr.is_link_local, "is a link-local address"),
        (addr.is_multicast, "is a multicast address"),
        (addr in _SHARED_ADDRESS_SPACE, "is in the shared address space 100.64.0.0/10"),
        # Before private: Python's private list also holds reserved ranges such as 240.0.0.0/4.
        (addr.is_reserved, "is a reserved address"),
        (addr.is_private, "is a private address"),  # includes IPv6 unique-local fc00::/7
        (not addr.is_global, "is not a public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _check_address(text: str, allow_loopback: bool) -> str:
    text = text.split("%", 1)[0]  # drop an IPv6 zone id ("fe80::1%eth0")
    addr = ipaddress.ip_address(text)
    # Judge a wrapped IPv4 address by itself: "::ffff:10.0.0.1" reaches 10.0.0.1, and the IPv6 forms
    # of public addresses would otherwise all be refused as "reserved".
    inner = _embedded_ipv4(addr)
    reason = _refusal(inner if inner is not None else addr, allow_loopback)
    if reason is not None:
        via = f" (which maps to {inner})" if inner is not None else ""
        # The resolver's own spelling: Python 3.11 would print "::ffff:10.0.0.1" as "::ffff:a00:1".
        raise WebhookRefused(f"webhook host resolves to {text}{via}, which {reason}")
    return text


def short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def check_webhook_target(
    url: str, *, allow_loopback: bool = False, resolve: Resolver = socket.getaddrinfo
) -> list[str]:
    """Refuse webhook URLs that could reach internal services; return the host's resolved addresses.

    Every A/AAAA record is checked, not just the first: the HTTP client may connect to any of them.
    Raises `WebhookRefused` with a one-line reason naming the offending address.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook URL is not valid ({exc})") from None
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        raise WebhookRefused("webhook URL must be an https:// URL with a host name")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("webhook URL must not embed credentials (user:password@)")
    if parts.scheme == "http" and not allow_loopback:
        raise WebhookRefused(
            "webhook URL must use https (plain http is allowed only for loopback in local mode)"
        )

    try:
        # The name httpx will send (Host, TLS SNI) is the one resolved: its IDNA 2008 encoding, not
        # getaddrinfo's own IDNA 2003 one ("straße.de" is two different registrations under them), and
        # a URL httpx cannot build is refused here, not while a delivery is under way.
        wire_host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise WebhookRefused(f"webhook URL is not valid ({short_error(exc)})") from None
    try:
        infos = resolve(wire_host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # gaierror is an OSError; a name IDNA cannot encode: UnicodeError
        raise WebhookRefused(f"could not resolve webhook host {host!r} ({exc})") from None
    if not infos:
        raise WebhookRefused(f"could not resolve webhook host {host!r} (no addresses)")

    # getaddrinfo repeats an address per socket type / protocol; keep each once, in order.
    addresses = list(dict.fromkeys(_check_address(str(info[4][0]), allow_loopback) for info in infos))
    if parts.scheme == "http":
        public = [a for a in addresses if not ipaddress.ip_address(a).is_loopback]
        if public:
            raise WebhookRefused(
                f"webhook URL must use https: plain http is allowed only for loopback, and {host!r} "
                f"resolves to {public[0]}"
            )
    return addresses
