"""Debian's Chromium for the UI tests: where it is, and the flags that keep it off the network."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# This machine has no network; without these Chromium keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
skip_without_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian chromium is not installed (.ci/run installs it: apt-get install chromium)",
)
needs_chromium = [pytest.mark.browser, skip_without_chromium]
