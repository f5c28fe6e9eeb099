"""What an attempt's result means for the delivery (delivered, try again later, give up)
and how long to wait before the next try. Pure functions: tested without a network."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

DELIVERED, RETRY, FAILED = "delivered", "retry", "failed"
# The retry delay grows by this factor per attempt: with a 5 s base, about 5 s, 20 s,
# 80 s, 5 min, 21 min, then the cap (1 h): eight attempts span some two and a half hours,
# enough to ride out a receiver's deploy or short outage without hammering it.
BACKOFF_FACTOR = 4.0


@dataclass(frozen=True)
class Result:
    """What one attempt saw: a status code, or the error that stopped it."""

    status_code: int | None = None
    error: str = ""  # why it failed, in words
    kind: str = ""  # timeout | network | refused | "" (an HTTP answer)
    retry_after: float | None = None  # seconds the receiver asked us to wait
    location: str = ""  # a redirect's Location


def classify(result: Result) -> tuple[str, str]:
    """(DELIVERED | RETRY | FAILED, reason). Timeouts, network errors, 5xx, 429 and 408
    may succeed later; a refused target, a redirect and other 4xx will not, so retrying
    them would only repeat the same answer for hours."""
    if result.kind == "refused":
        return FAILED, f"refused by the outbound policy: {result.error}"
    if result.kind in ("timeout", "network"):
        return RETRY, result.error
    code = result.status_code or 0
    if 200 <= code < 300:
        return DELIVERED, ""
    if 300 <= code < 400:
        where = f" (Location: {result.location[:200]})" if result.location else ""
        return FAILED, f"HTTP {code}: redirects are not followed{where}; give the webhook its final URL"
    if code >= 500 or code in (429, 408):
        return RETRY, f"HTTP {code}" + (f": {result.error}" if result.error else "")
    return FAILED, f"HTTP {code}" + (f": {result.error}" if result.error else "")


def backoff(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
            rand: random.Random | None = None) -> float:
    """Seconds before the attempt after `attempt` (1 = the first failed). Exponential,
    with jitter over the upper half: d = min(cap, base * 4^(attempt-1)), wait d/2 + U(0, d/2).
    The random half spreads the retries of many deliveries that failed together (a
    receiver's outage) instead of bringing them back at once; the fixed half guarantees the
    receiver real rest and delays that grow with each attempt. A Retry-After the receiver
    sent is honoured when longer, up to the cap."""
    rand = rand or random
    d = min(cap, base * BACKOFF_FACTOR ** max(0, attempt - 1))
    delay = d / 2 + rand.uniform(0, d / 2)
    if retry_after is not None and retry_after > delay:
        delay = min(cap, retry_after)
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
