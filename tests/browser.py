"""Headless Chromium for the page tests: Debian's ``chromium`` driven by
playwright's Python package (never ``playwright install``), cut off from every
host but loopback, recording each request a page makes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
# Chromium itself calls Google hosts unless told not to; every name but
# loopback resolves to nothing.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
LOCAL = ("http://127.0.0.1", "https://127.0.0.1", "file://", "data:", "blob:", "about:")
# Where screenshots go: $BANKPLATFORM_SCREENSHOTS (`make screenshots` sets docs/screenshots).
SCREENSHOTS_ENV = "BANKPLATFORM_SCREENSHOTS"


@dataclass
class RecordedPage:
    """A page and every URL it requested."""

    page: Any
    requests: list[str] = field(default_factory=list)

    def third_party(self) -> list[str]:
        """Requests that left loopback and local files."""
        return [url for url in self.requests if not url.startswith(LOCAL)]

    def screenshot(self, name: str, folder: Path) -> Path:
        """Save a full-page screenshot (and a copy for the docs when asked)."""
        target = folder / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=False)
        docs = os.environ.get(SCREENSHOTS_ENV)
        if docs:
            Path(docs).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(docs) / f"{name}.png"), full_page=False)
        return target


@contextmanager
def offline_page(width: int = 1400, height: int = 900) -> Iterator[RecordedPage]:
    """A fresh headless Chromium page that records its requests.

    Raises:
        AssertionError: Chromium is not installed (``apt-get install chromium``;
            ``.ci/run`` installs it).
    """
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        msg = f"{CHROMIUM} is missing: apt-get install chromium (make browser)"
        raise AssertionError(msg)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            recorded = RecordedPage(page)
            page.on("request", lambda request: recorded.requests.append(request.url))
            yield recorded
        finally:
            browser.close()
