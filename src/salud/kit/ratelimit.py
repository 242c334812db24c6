"""A fixed-window counter per key, in process: enough to slow password guessing from one
address (each app process keeps its own; the per-account lockout is the durable defence)."""

from __future__ import annotations

import time


class WindowLimiter:
    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, key: str) -> int:
        """Count one attempt; 0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        start, count = self._counts.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        count += 1
        self._counts[key] = (start, count)
        if len(self._counts) > 100_000:  # forget old windows; bounded memory
            self._counts = {k: v for k, v in self._counts.items() if now - v[0] < self.window}
        if count > self.limit:
            return max(1, int(self.window - (now - start)))
        return 0

    def waiting(self, key: str) -> int:
        """The seconds to wait if this key has spent its limit in the window (nothing is
        counted: the caller `hit`s what counts, such as failures only), else 0."""
        start, count = self._counts.get(key, (0.0, 0))
        elapsed = time.monotonic() - start
        if count >= self.limit and elapsed < self.window:
            return max(1, int(self.window - elapsed))
        return 0
