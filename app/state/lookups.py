"""Direct GETs of objects the cache does not have yet, bounded so a flood cannot pass through.

A migration may name a VMI created a moment ago, before its watch event arrived: then one
GET finds it. A flood of migrations naming VMIs that do not exist must not become the same
flood of GETs on the API server, nor hold answers past the webhook's timeout, so:
- one GET per object at a time (single flight): concurrent lookups of it share its answer;
- a not-found answer is remembered for a few seconds (negative cache);
- GETs are rate-limited (a token bucket, client-go's default 5 per second, burst 10) and
  at most a few run at once; beyond that a lookup fails at once, saying so;
- a lookup, waiting included, never takes longer than `timeout` (1 s: well under the
  webhook's timeoutSeconds).
On the event loop a lookup that would need a GET raises `WouldBlock` (the server runs the
handler again in a worker thread), but one the limits refuse fails there and then.
"""

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from app.state import LookupFailed, WouldBlock

log = logging.getLogger(__name__)

Found = TypeVar("Found", bound=Mapping[str, Any])
"""What a GET finds: the labels of an object, or what else a caller reads of it."""

FOUND = "found"
NOT_FOUND = "not_found"
ERROR = "error"
RATE_LIMITED = "rate_limited"
NEGATIVE_CACHED = "negative_cached"
COALESCED = "coalesced"
RESULTS = (FOUND, NOT_FOUND, ERROR, RATE_LIMITED, NEGATIVE_CACHED, COALESCED)
"""How a lookup ended, as `migration_policy_webhook_direct_gets_total` counts it: the first
three made a GET, the others did not (refused, remembered absent, or another's GET)."""

RATE_LIMITED_MESSAGE = "the webhook is rate-limiting direct lookups"
RATE_LIMIT_LOG_INTERVAL = 10.0
"""Seconds between two log lines about refused lookups."""


@dataclass(frozen=True)
class LookupLimits:
    rate: float = 5.0
    """GETs per second, sustained."""
    burst: int = 10
    """GETs at once after a quiet time."""
    concurrency: int = 4
    """GETs in flight at most."""
    timeout: float = 1.0
    """Seconds a lookup may take, waiting for another's GET included."""
    negative_ttl: float = 5.0
    """Seconds a not-found answer is remembered."""
    negative_limit: int = 10_000
    """Not-found answers remembered at most."""


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; not thread-safe (callers lock)."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> bool:
        self._refill()
        return self._tokens >= 1.0

    def take(self) -> bool:
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class _Flight(Generic[Found]):
    """One GET in progress, and its answer for the lookups waiting on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.found: Found | None = None
        self.error: LookupFailed | None = None


class DirectLookups:
    """The bounded direct GETs of every resource, with their counts by result."""

    def __init__(self, resources: Iterable[str], limits: LookupLimits | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or LookupLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._bucket = TokenBucket(self.limits.rate, self.limits.burst, clock)
        self._active = 0
        self._flights: dict[tuple[str, Hashable], _Flight[Any]] = {}
        self._absent: dict[tuple[str, Hashable], float] = {}
        """Not-found answers by (resource, key): until when, in insertion (= expiry) order."""
        self._counts = {(resource, result): 0 for resource in resources for result in RESULTS}
        self._refused_since_log = 0
        self._logged_at = -RATE_LIMIT_LOG_INTERVAL

    def counts(self) -> dict[tuple[str, str], int]:
        """Lookups so far by (resource, result)."""
        with self._lock:
            return dict(self._counts)

    def look_up(
        self, resource: str, key: Hashable, get: Callable[[float], Found | None], *,
        on_loop: bool, what: str,
    ) -> Found | None:
        """`get(timeout)`'s answer for `key`, within the limits; None if it does not exist.

        Raises WouldBlock when `on_loop` and a GET (or waiting for one) is needed, and
        LookupFailed when the limits refuse it or the GET fails.
        """
        cache_key = (resource, key)
        until = self._absent.get(cache_key)
        if until is not None and until > self._clock():
            self._count(resource, NEGATIVE_CACHED)
            return None
        if on_loop:
            with self._lock:
                may_start = cache_key in self._flights or self._may_start()
            if not may_start:
                self._refused(resource)
            raise WouldBlock(f"{what} is not cached")
        with self._lock:
            flight = self._flights.get(cache_key)
            leader = flight is None
            if leader:
                if not self._may_start() or not self._bucket.take():
                    flight = None
                else:
                    flight = self._flights[cache_key] = _Flight[Found]()
                    self._active += 1
        if flight is None:
            self._refused(resource)
        if not leader:
            return self._wait(resource, flight)
        return self._lead(resource, cache_key, flight, get)

    def _may_start(self) -> bool:
        return self._active < self.limits.concurrency and self._bucket.available()

    def _lead(self, resource: str, cache_key: tuple[str, Hashable], flight: _Flight[Found],
              get: Callable[[float], Found | None]) -> Found | None:
        try:
            flight.found = get(self.limits.timeout)
        except LookupFailed as error:
            flight.error = error
            self._count(resource, ERROR)
            raise
        except Exception:  # a bug: those waiting must not take it for "not found"
            flight.error = LookupFailed("an internal error, logged by the webhook")
            raise
        finally:
            with self._lock:
                del self._flights[cache_key]
                self._active -= 1
            flight.done.set()
        if flight.found is None:
            self._remember_absent(cache_key)
        self._count(resource, NOT_FOUND if flight.found is None else FOUND)
        return flight.found

    def _wait(self, resource: str, flight: _Flight[Found]) -> Found | None:
        if not flight.done.wait(self.limits.timeout):
            self._count(resource, ERROR)
            raise LookupFailed(f"the API did not answer within {self.limits.timeout:g} s")
        self._count(resource, COALESCED)
        if flight.error is not None:
            raise LookupFailed(str(flight.error))
        return flight.found

    def _remember_absent(self, cache_key: tuple[str, Hashable]) -> None:
        now = self._clock()
        with self._lock:
            absent = self._absent
            absent.pop(cache_key, None)
            absent[cache_key] = now + self.limits.negative_ttl
            while absent:
                oldest = next(iter(absent))
                if absent[oldest] > now and len(absent) <= self.limits.negative_limit:
                    break
                del absent[oldest]

    def _count(self, resource: str, result: str) -> None:
        with self._lock:
            self._counts[(resource, result)] += 1

    def _refused(self, resource: str) -> NoReturn:
        """Count and (now and then) log a lookup the limits refuse; raise LookupFailed."""
        now = self._clock()
        with self._lock:
            self._counts[(resource, RATE_LIMITED)] += 1
            self._refused_since_log += 1
            refused = self._refused_since_log
            due = now - self._logged_at >= RATE_LIMIT_LOG_INTERVAL
            if due:
                self._logged_at = now
                self._refused_since_log = 0
        if due:
            limits = self.limits
            log.warning("direct lookups of objects not cached are rate-limited (%g per second, "
                        "burst %d, %d at once): %d refused since the last such line, answered "
                        "unchanged with a warning", limits.rate, limits.burst,
                        limits.concurrency, refused)
        raise LookupFailed(RATE_LIMITED_MESSAGE)
