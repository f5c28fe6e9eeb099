"""One HTTP attempt of a delivery, under the outbound policy.

The URL was checked when the webhook was registered; here its host is resolved and every
address checked again (the answer may have changed), and the request goes to the checked
address itself, with the URL's host name in the Host header and, for https, as the TLS
server name (SNI and the certificate's name check): a second DNS answer cannot swap the
target (DNS rebinding). Redirects are never followed. The whole attempt, resolution
included, has one deadline, and at most MAX_RESPONSE_BYTES of the answer are read.
Connections are not kept alive between attempts (see HttpSender).
"""

from __future__ import annotations

import asyncio
import ipaddress

import httpx

from graphmesh.webhooks.retry import Result, parse_retry_after
from graphmesh.webhooks.targets import OutboundPolicy, RefusedTarget

MAX_RESPONSE_BYTES = 64 * 1024
# What of a failed answer's body goes into last_error (operators read it in `webhooks list`).
ERROR_SNIPPET_CHARS = 200
USER_AGENT = "graphmesh-webhooks/1"


def _host_for_url(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


class HttpSender:
    def __init__(self, policy: OutboundPolicy, *, timeout_seconds: float,
                 client: httpx.AsyncClient | None = None) -> None:
        self._policy = policy
        self._timeout = timeout_seconds
        # follow_redirects=False is httpx's default; said here because it is a safety rule.
        # No keep-alive: requests go to the checked address with the host name only as SNI,
        # and httpcore picks a pooled connection by scheme, address and port alone
        # (sni_hostname plays no part), so two webhook hosts behind one IP would share a TLS
        # connection whose certificate was checked for the first host only. A fresh
        # connection per attempt checks each host's certificate.
        self._client = client or httpx.AsyncClient(follow_redirects=False, timeout=timeout_seconds,
                                                   trust_env=False,
                                                   limits=httpx.Limits(max_keepalive_connections=0))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Result:
        """POSTs `body` to `url`; never raises for what the network or receiver did."""
        try:
            return await asyncio.wait_for(self._post(url, body, headers), self._timeout)
        except RefusedTarget as exc:
            return Result(kind="refused", error=exc.message if hasattr(exc, "message") else str(exc))
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return Result(kind="timeout", error=f"no answer within {self._timeout:g} s")
        except (httpx.TransportError, OSError) as exc:
            return Result(kind="network", error=f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Result:
        target = self._policy.check_url(url)  # the policy may have tightened since registration
        address = await self._policy.resolve(target)
        default_port = 443 if target.scheme == "https" else 80
        host_header = _host_for_url(target.host) + ("" if target.port == default_port else f":{target.port}")
        request = self._client.build_request(
            "POST", f"{target.scheme}://{_host_for_url(address)}:{target.port}{target.path}", content=body,
            headers={**headers, "host": host_header, "content-type": "application/json",
                     "user-agent": USER_AGENT},
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        response = await self._client.send(request, stream=True)
        try:
            snippet = await _read_capped(response)
        finally:
            await response.aclose()
        text = "" if 200 <= response.status_code < 300 else \
            snippet.decode("utf-8", "replace").strip()[:ERROR_SNIPPET_CHARS]
        return Result(status_code=response.status_code, error=text,
                      retry_after=parse_retry_after(response.headers.get("retry-after")),
                      location=response.headers.get("location", ""))


async def _read_capped(response: httpx.Response) -> bytes:
    """At most MAX_RESPONSE_BYTES of the body: a receiver cannot make us buffer more."""
    out = bytearray()
    async for chunk in response.aiter_raw():
        out.extend(chunk[:MAX_RESPONSE_BYTES - len(out)])
        if len(out) >= MAX_RESPONSE_BYTES:
            break
    return bytes(out)
