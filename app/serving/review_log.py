"""The one log line per answered review, cheap enough for the request path.

Through `logging`'s records and formatters a line costs 20–40 µs, as much as answering the
review; here it is formatted directly, in the same shape as `app.serving.logs` gives every other
line (text `key=value`, escaped; or one JSON object), and written in batches: the buffer is
flushed by the event loop every `FLUSH_SECONDS`, when it grows large, and at shutdown;
each line is formatted then.
"""

import asyncio
import contextlib
import logging
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import orjson

from app.serving.logs import text_value
from app.settings import LoggingFormat

LOGGER = "app.review"
FLUSH_SECONDS = 0.2
FLUSH_LINES = 256

Entry = tuple[float, str, str, str, str, str, bool, str | None, int | None, float]
"""An answer to log: its Unix time, uid, webhook, operation, namespace, name, allowed,
policy, number of causes and duration in ms."""


class ReviewLog:
    """Writes `answered` lines at info level, if that level is enabled for `app.review`.

    An answer is kept as a tuple of its fields; its line is formatted when the batch is
    flushed, off the answer's own path: in a tight loop it costs a third of what it did
    between two TLS records."""

    def __init__(self, format: LoggingFormat, stream: TextIO | None = None) -> None:
        self.enabled = logging.getLogger(LOGGER).isEnabledFor(logging.INFO)
        self.stream = stream if stream is not None else sys.stderr
        self._line = self._json_line if format is LoggingFormat.JSON else self._text_line
        self._entries: list[Entry] = []
        self._second = self._iso_second = self._millisecond = -1
        self._stamp = self._iso_stamp = self._ms_stamp = ""

    def answered(self, uid: str, webhook: str, operation: str, namespace: str, name: str,
                 allowed: bool, policy: str | None, causes: int | None,
                 duration_ms: float, /) -> None:
        """Log one answered review: who, what, the decision, never the object."""
        if not self.enabled:
            return
        entries = self._entries
        entries.append((time.time(), uid, webhook, operation, namespace, name, allowed,
                        policy, causes, duration_ms))
        if len(entries) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._entries:
            entries, self._entries = self._entries, []
            self.stream.write("\n".join(map(self._line, entries)) + "\n")
            self.stream.flush()

    async def run(self) -> None:
        """Flush every FLUSH_SECONDS until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                self.flush()
        finally:
            with contextlib.suppress(ValueError, OSError):  # the stream may be closed
                self.flush()

    def _json_line(self, entry: Entry) -> str:
        now, uid, webhook, operation, namespace, name, allowed, policy, causes, duration = entry
        return orjson.dumps({
            "ts": self._iso_timestamp(now), "level": "info", "logger": LOGGER,
            "msg": "answered", "uid": uid, "webhook": webhook, "operation": operation,
            "namespace": namespace, "name": name, "allowed": allowed, "policy": policy,
            "causes": causes, "duration_ms": round(duration, 3),
        }).decode()

    def _text_line(self, entry: Entry) -> str:
        now, uid, webhook, operation, namespace, name, allowed, policy, causes, duration = entry
        line = (f"{self._timestamp(now)} INFO {LOGGER}: answered uid={text_value(uid)} "
                f"webhook={webhook} operation={operation} namespace={text_value(namespace)} "
                f"name={text_value(name)} allowed={'true' if allowed else 'false'}")
        if policy is not None:
            line += f" policy={text_value(policy)}"
        if causes is not None:
            line += f" causes={causes}"
        return line + f" duration_ms={duration:.3f}"

    def _iso_timestamp(self, now: float) -> str:
        """As the JSON lines' `ts` (`2026-12-02T17:23:26.123456+00:00`), the second made once."""
        second = int(now)
        if second != self._iso_second:
            self._iso_second = second
            self._iso_stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._iso_stamp}.{int((now - second) * 1_000_000):06d}+00:00"

    def _timestamp(self, now: float) -> str:
        """As logging's default asctime (`2026-12-02 17:23:26,123`): the second made once, the
        whole stamp once a millisecond (a flushed batch has many lines of the same one)."""
        millisecond = int(now * 1000)
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            second, fraction = divmod(millisecond, 1000)
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._ms_stamp = f"{self._stamp},{fraction:03d}"
        return self._ms_stamp
