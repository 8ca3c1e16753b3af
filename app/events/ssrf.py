"""Where a webhook may point: refusing URLs that would make the platform attack its own network.

A webhook URL names a host the platform will send child data to, from inside a government
network. So: https only (plain http in development), no credentials in the URL, and every
address the host resolves to must be a global one, unless ``CHILDLINK_WEBHOOK_ALLOWED_HOSTS``
names the host or a network holding the address. The check runs when a subscription is saved
and again at every delivery after resolving the name, and the delivery connects to the address
that was checked (no second lookup a DNS-rebinding attacker could answer differently). Redirects
are never followed.

IPv6 has forms that carry an IPv4 address and reach it through a translator or a tunnel: NAT64
(``64:ff9b::/96``, and the local-use ``64:ff9b:1::/48``), 6to4 (``2002::/16``), Teredo
(``2001::/32``), IPv4-compatible (``::a.b.c.d``) and IPv4-translated (``::ffff:0:a.b.c.d``).
``64:ff9b::a9fe:a9fe`` is the metadata service 169.254.169.254 behind a NAT64 gateway, so such an
address is judged by every IPv4 address it carries as well as by itself. IPv4-mapped
(``::ffff:a.b.c.d``) is the IPv4 address itself, in the URL and in the allow-list alike.

Hosts that look like numbers (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are read as IPv4 by
resolvers in different ways (decimal, octal, hex, shortened); only the dotted-quad form is taken.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from app.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2000

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052, IPv4 in the last 32 bits
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use, never global
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # RFC 3056, IPv4 in bits 16-47
TEREDO = ipaddress.IPv6Network("2001::/32")  # RFC 4380, server and (inverted) client IPv4
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 (deprecated), IPv4 in the last 32 bits
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT
EMBEDDING_PREFIXES: tuple[ipaddress.IPv6Network, ...] = (
    NAT64,
    NAT64_LOCAL,
    SIX_TO_FOUR,
    TEREDO,
    IPV4_COMPATIBLE,
    IPV4_TRANSLATED,
)


class WebhookUrlRefused(Unprocessable):
    code, title = "webhook_url_refused", "The webhook URL is not allowed"


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts, networks = set(), []
        for entry in entries:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                networks.append(_unmapped_network(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_address(self, address: IPAddress) -> bool:
        """Whether an allowed network holds the address.

        An address that carries an IPv4 address for a translator or tunnel is held only by a
        network inside its own translation prefix (``64:ff9b::a00:0/104`` names NAT64 to
        10.0.0.0/8 on purpose). Neither ``10.0.0.0/8`` nor a broad IPv6 range such as ``::/0`` or
        ``2000::/3`` admits ``64:ff9b::a9fe:a9fe`` by accident.
        """
        address = _unmapped(address)
        prefix = _embedding_prefix(address)
        return any(
            address in network
            and (prefix is None or (isinstance(network, ipaddress.IPv6Network) and network.subnet_of(prefix)))
            for network in self.networks
        )


@dataclass(frozen=True)
class Destination:
    """A checked URL and the addresses it may be reached at."""

    url: SplitResult
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


def _unmapped_network(network: IPNetwork) -> IPNetwork:
    mapped = ipaddress.IPv6Network("::ffff:0:0/96")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(mapped):
        low = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((low, network.prefixlen - 96))
    return network


def _embedding_prefix(address: IPAddress) -> ipaddress.IPv6Network | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    return next((prefix for prefix in EMBEDDING_PREFIXES if address in prefix), None)


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses a translator or tunnel would carry a connection to ``address`` on to."""
    prefix = _embedding_prefix(address)
    if prefix is None:
        return ()
    assert isinstance(address, ipaddress.IPv6Address)
    if prefix == SIX_TO_FOUR:
        return (ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF),)
    if prefix == TEREDO:
        server = ipaddress.IPv4Address((int(address) >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~int(address) & 0xFFFFFFFF)
        return server, client
    return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)


def _global(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


def _public(address: IPAddress) -> bool:
    address = _unmapped(address)
    if _embedding_prefix(address) == NAT64_LOCAL:
        return False  # the operator's own translator: its reach is unknown, so never public
    return _global(address) and all(_global(inner) for inner in embedded_ipv4(address))


def permitted(address: IPAddress, allow: AllowList) -> bool:
    """Whether a webhook may connect to ``address``: public, or inside an allowed network."""
    return _public(address) or allow.allows_address(address)


def _looks_numeric(host: str) -> bool:
    """A host whose last label is a number is an IPv4 address to a resolver, in whatever base
    (the WHATWG URL rule): ``2130706433``, ``0x7f.1``, ``0177.0.0.1`` all reach 127.0.0.1."""
    last = host.rsplit(".", 1)[-1]
    return last.isdigit() or (
        last[:2] in ("0x", "0X") and all(c in "0123456789abcdefABCDEF" for c in last[2:])
    )


def parse(url: str, *, allow_http: bool) -> tuple[SplitResult, str, int]:
    """Check the URL's form; returns it split, with its lower-case host and its port."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused(f"A webhook URL has at most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlRefused("The webhook URL cannot be parsed.") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise WebhookUrlRefused("Webhook URLs must use " + " or ".join(schemes) + ".")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("A webhook URL may not carry credentials; the signature authenticates us.")
    if parts.fragment:
        raise WebhookUrlRefused("A webhook URL may not have a fragment.")
    host = (parts.hostname or "").rstrip(".")
    if not host or not host.isascii() or any(ch.isspace() for ch in host):
        raise WebhookUrlRefused("The webhook URL needs an ASCII host name (use punycode) or an IP address.")
    if ":" not in host and _looks_numeric(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise WebhookUrlRefused(
                "A numeric webhook host must be a dotted-quad IPv4 address (no decimal, octal or hex forms)."
            ) from None
    return parts, host, port or (443 if parts.scheme == "https" else 80)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise WebhookUrlRefused("The webhook host name does not resolve.") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise WebhookUrlRefused("The webhook host name does not resolve.")
    return addresses


async def check(url: str, allow: AllowList, *, allow_http: bool) -> Destination:
    """Check the URL and every address its host resolves to now; raises :class:`WebhookUrlRefused`.

    A host named in the allow-list may resolve anywhere; otherwise each address must be global
    or inside an allowed network. All of them, not just one: the connection could go to any.
    """
    parts, host, port = parse(url, allow_http=allow_http)
    addresses = await _resolve(host, port)
    if host.lower() not in allow.hosts:
        for address in addresses:
            if not permitted(address, allow):
                raise WebhookUrlRefused(
                    "The webhook host is or resolves to a non-public address (loopback, private, "
                    "link-local or metadata range, or an IPv6 form carrying one); ask the operator "
                    "to allow it if it is yours."
                )
    return Destination(parts, host, port, tuple(addresses))
