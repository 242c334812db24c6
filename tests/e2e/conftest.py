"""Browser tests: Debian's Chromium (never a downloaded browser) driven by Playwright, against
the real server (uvicorn in a subprocess) on the test database. Screenshots are kept in
test-artifacts/e2e/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
FAKE_CAMERA = ARTIFACTS / "camera.y4m"


def _prepare() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make install does)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    _prepare()
    async with async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={FAKE_CAMERA}",
            ],
        )  # fmt: skip
        try:
            yield launched
        finally:
            await launched.close()
