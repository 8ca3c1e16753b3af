"""Where a webhook may point: refusing URLs that would make the platform attack its own network.

A webhook URL names a host the platform will send child data to, from inside a government
network. So: https only (plain http in development), no credentials in the URL, and every
address the host resolves to must be a global one, unless ``CHILDLINK_WEBHOOK_ALLOWED_HOSTS``
names the host or a network holding the address. The check runs when a subscription is saved
and again at every delivery after resolving the name, and the delivery connects to the address
that was checked (no second lookup a DNS-rebinding attacker could answer differently). Redirects
are never followed.
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
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class Destination:
    """A checked URL and the addresses it may be reached at."""

    url: SplitResult
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address.is_global and not address.is_multicast


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
            if not _public(address) and not allow.allows_address(address):
                raise WebhookUrlRefused(
                    "The webhook host is or resolves to a non-public address (loopback, private, "
                    "link-local or metadata range); ask the operator to allow it if it is yours."
                )
    return Destination(parts, host, port, tuple(addresses))
