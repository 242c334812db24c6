"""Reading a request body that may be larger than anyone should hold."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def read_at_most(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, read until it passes `limit` bytes and no further: a result longer than
    `limit` means "too large" (the rest was never read)."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            break
    return bytes(data)
