"""Headless Chromium for the page tests: Debian's `chromium`, driven by Playwright.

Playwright cannot download its own browsers here, so it is pointed at the
system's executable (`GUSHER_CHROMIUM` overrides the lookup). `.ci/run`
installs Debian's package; elsewhere the page tests are skipped when it is
missing (and fail under CI, where it must be there).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("GUSHER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not (os.environ.get("CI") or os.environ.get("GUSHER_CI")),
    reason="chromium not installed (.ci/run installs it)",
)


def launch() -> Iterator[Any]:
    """A headless browser for a module's tests (the `browser` fixture)."""
    assert CHROMIUM is not None, "Debian's chromium is required in CI (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def page_errors(page: Any, expected: tuple[str, ...] = ()) -> list[str]:
    """A list that collects the page's uncaught errors and console errors (but `expected` ones)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda m: m.type == "error" and not any(e in m.text for e in expected) and errors.append(m.text),
    )
    return errors
