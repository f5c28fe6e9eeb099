"""Where a webhook may point: the deployment's outbound policy.

A webhook makes the api POST to a URL a caller chose, from inside the deployment's
network. Without a policy that is a server-side request forgery: a caller could name the
cloud metadata endpoint, a database, or an admin port on localhost. So, unless the
operator allows it (GRAPHMESH_WEBHOOK_ALLOW_PRIVATE, for local development):

- only http and https, no credentials in the URL;
- only the allowed ports (GRAPHMESH_WEBHOOK_ALLOWED_PORTS, default 80 and 443);
- only the allowed domains and their subdomains, when a list is set
  (GRAPHMESH_WEBHOOK_ALLOWED_DOMAINS);
- host names only of letters, digits, '-' and '.' once converted with IDNA (so
  "bücher.example" is sent as "xn--bcher-kva.example", and a host with spaces is refused);
- never an address that is loopback, private, link-local (169.254.0.0/16: cloud metadata),
  IPv6 site-local (fec0::/10), shared, multicast, reserved or unspecified, nor an IPv6 address that embeds one
  (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64), unless it lies in an allowed
  network (GRAPHMESH_WEBHOOK_ALLOWED_NETWORKS): checked on the URL when it is registered,
  and again on every address the host name resolves to when a delivery is sent (the
  sender then connects to the address it checked, so a second DNS answer cannot swap it).
  Numeric host forms that resolvers read as IPv4 (2130706433, 0x7f.1, 0177.0.0.1) count
  as addresses, and `localhost` names are refused before any resolution.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from graphmesh.errors import InvalidArgument

MAX_URL_LENGTH = 2048  # graphmesh/rpc/validation.py MAX_URL_CHARS refuses longer ones first
# What inet_aton (and so getaddrinfo) reads as an IPv4 address: decimal, octal or hex
# parts, one to four of them.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")
# NAT64's well-known prefix: the last 32 bits are the IPv4 address it reaches.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What a host name may hold once converted to ASCII (IDNA): DNS letters, digits, '-' and '.'.
_HOST_NAME = re.compile(r"^[a-z0-9.-]+$")


class RefusedTarget(InvalidArgument):
    """A webhook URL, or the address it resolves to, that the outbound policy refuses."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="WEBHOOK_TARGET_REFUSED")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through a transition mechanism, if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):  # NAT64, or IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refused_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            kind = _refused_address(embedded)
            return f"{kind} (embedded in {ip})" if kind else None
    # fec0::/10 (site-local, deprecated but still routed inside some networks) is "global"
    # to Python's ipaddress: named here.
    for kind, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("site-local", getattr(ip, "is_site_local", False)),
                       ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if flag:
            return kind
    if not ip.is_global:  # e.g. 100.64.0.0/10, shared address space
        return "not global"
    return None


@dataclass(frozen=True)
class Target:
    """A checked webhook URL, split as the sender needs it."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # with its query


@dataclass(frozen=True)
class OutboundPolicy:
    allow_private: bool = False
    allowed_domains: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] | None = (80, 443)  # None: any port
    # Allowed even though private or loopback (an internal receiver).
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, settings) -> "OutboundPolicy":
        """The policy the settings describe; ValueError naming the variable for a bad list
        (a process refuses to start rather than run with a policy it misread)."""
        try:
            domains = tuple(d.strip().lower().strip(".").encode("idna").decode("ascii")
                            for d in settings.webhook_allowed_domains.split(",") if d.strip())
        except UnicodeError as exc:
            raise ValueError(f"GRAPHMESH_WEBHOOK_ALLOWED_DOMAINS holds a name IDNA cannot convert: {exc}") from None
        ports_text = settings.webhook_allowed_ports.strip()
        try:
            ports = None if ports_text == "*" else tuple(int(p) for p in ports_text.split(",") if p.strip())
        except ValueError:
            raise ValueError("GRAPHMESH_WEBHOOK_ALLOWED_PORTS must be comma-separated port numbers or *, "
                             f"got {ports_text!r}") from None
        try:
            networks = tuple(ipaddress.ip_network(n.strip(), strict=False)
                             for n in getattr(settings, "webhook_allowed_networks", "").split(",") if n.strip())
        except ValueError as exc:
            raise ValueError(f"GRAPHMESH_WEBHOOK_ALLOWED_NETWORKS must be comma-separated CIDRs: {exc}") from None
        return cls(allow_private=settings.webhook_allow_private, allowed_domains=domains, allowed_ports=ports,
                   allowed_networks=networks)

    def check_url(self, url: str) -> Target:
        """The URL's own refusals (scheme, credentials, port, domain, an IP literal's
        range); RefusedTarget with the reason. Resolution is checked at send time."""
        if not url:
            raise RefusedTarget("a webhook needs a url")
        if len(url) > MAX_URL_LENGTH:
            raise RefusedTarget(f"the webhook url is longer than {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise RefusedTarget(f"the webhook url is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise RefusedTarget(f"a webhook url must be http or https, not {parts.scheme or 'schemeless'!r}")
        if parts.username or parts.password:
            raise RefusedTarget("a webhook url may not carry credentials; receivers verify the signature instead")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise RefusedTarget("the webhook url has no host")
        if port == 0:
            raise RefusedTarget("webhook port 0 is not a port a receiver can listen on")
        port = port or (443 if parts.scheme == "https" else 80)
        if self.allowed_ports is not None and port not in self.allowed_ports:
            raise RefusedTarget(f"webhook port {port} is not allowed (allowed: "
                                f"{', '.join(map(str, self.allowed_ports))}; GRAPHMESH_WEBHOOK_ALLOWED_PORTS)")
        literal = _ip_literal(host)
        if literal is None:
            host = _ascii_host(host)
        if literal is None and (host == "localhost" or host.endswith(".localhost")) and not self.allow_private:
            raise RefusedTarget(f"webhook host {host} is a loopback name; set GRAPHMESH_WEBHOOK_ALLOW_PRIVATE=1 "
                                "to allow such targets")
        if literal is None and self.allowed_domains and not any(
                host == d or host.endswith("." + d) for d in self.allowed_domains):
            raise RefusedTarget(f"webhook host {host} is not in the allowed domains "
                                f"({', '.join(self.allowed_domains)}; GRAPHMESH_WEBHOOK_ALLOWED_DOMAINS)")
        if literal is not None:
            if self.allowed_domains and not self.allow_private:
                raise RefusedTarget("webhook urls must name a host in the allowed domains, not an address")
            self.check_address(literal, host)
        path = parts.path or "/"
        return Target(url=url, scheme=parts.scheme, host=host, port=port,
                      path=path + (f"?{parts.query}" if parts.query else ""))

    def check_address(self, ip, host: str) -> None:
        if self.allow_private or any(ip.version == n.version and ip in n for n in self.allowed_networks):
            return
        kind = _refused_address(ip)
        if kind is not None:
            raise RefusedTarget(f"webhook host {host} is (or resolves to) {ip}, a {kind} address; set "
                                "GRAPHMESH_WEBHOOK_ALLOW_PRIVATE=1 to allow such targets")

    async def resolve(self, target: Target) -> str:
        """The address to connect to: the first that the host resolves to, once every
        address it resolves to passed the policy (one refused address refuses the host)."""
        literal = _ip_literal(target.host)
        if literal is not None:
            self.check_address(literal, target.host)
            return str(literal)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {target.host}: {exc.strerror}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise OSError(f"{target.host} resolves to no address")
        for ip in addresses:
            self.check_address(ip, target.host)
        return str(addresses[0])


def _ascii_host(host: str) -> str:
    """The host name as DNS and TLS see it (IDNA: "bücher.example" -> "xn--bcher-kva.example");
    RefusedTarget when it cannot be converted or holds other than letters, digits, '-', '.'."""
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise RefusedTarget(f"webhook host {host!r} is not a valid host name (IDNA)") from None
    if not _HOST_NAME.match(ascii_host) or ".." in ascii_host:
        raise RefusedTarget(f"webhook host {host!r} is not a valid host name: only letters, digits, '-' and '.'")
    return ascii_host


def _ip_literal(host: str):
    """The address a host names by itself, in any form a resolver would read as one."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
