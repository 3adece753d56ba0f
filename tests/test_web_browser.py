"""The dashboard in a real browser: Playwright drives Debian's chromium (browsers cannot be downloaded here)
from the overview through every page by clicking, takes a screenshot of each, and checks that no page logs
a console error and no request leaves 127.0.0.1."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pgmill.project import ProjectContext
from pgmill.web.app import create_app
from pgmill.web.pages import PAGES
from pgmill.web.server import bound_port, serve_http, stop_http
from tests.test_web_dashboard import rich  # noqa: F401 - the module's project fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail("Debian's chromium is missing: scripts/setup-dev.sh installs it", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed")


@pytest.fixture(scope="module")
def base_url(rich: tuple[ProjectContext, str]) -> Iterator[str]:  # noqa: F811
    ctx, _ = rich
    server, thread = serve_http(create_app(ctx, token=None), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(server)}"
    finally:
        stop_http(server, thread)


def test_every_page_by_clicking_from_the_overview(base_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    hosts: set[str] = set()
    resources: list[str] = []  # what the pages asked for besides the pages themselves
    shots = Path(os.environ.get("PGMILL_SCREENSHOTS", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: hosts.add(urlsplit(r.url).hostname or r.url))
            page.on("request", lambda r: None if r.is_navigation_request() else resources.append(r.url))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(base_url + "/")
            assert page.title().startswith("Overview")
            for p_ in PAGES:
                page.click(f'nav a:text-is("{p_.title}")')
                page.wait_for_load_state("load")
                assert page.locator("h1").inner_text() == p_.title, p_.name
                assert page.url.rstrip("/") == (base_url if p_.name == "overview" else f"{base_url}/{p_.name}")
                page.screenshot(path=str(shots / f"{p_.name}.png"), full_page=True)
            # a run: from the overview's "last run" link to its page and back through the navigation
            page.click('nav a:text-is("Overview")')
            page.locator('#health a[href^="/runs/"]').first.click()
            page.wait_for_load_state("load")
            assert "/runs/" in page.url and page.locator("h1").inner_text().startswith("Run")
            page.screenshot(path=str(shots / "run.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert hosts == {"127.0.0.1"}
    assert resources == []  # everything inline: no stylesheet, script, image or favicon fetched
    assert len(list(shots.glob("*.png"))) == len(PAGES) + 1


def test_pages_read_fine_without_javascript(base_url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(java_script_enabled=False).new_page()
            texts: dict[str, Any] = {}
            for p_ in PAGES:
                page.goto(base_url + ("/" if p_.name == "overview" else f"/{p_.name}"))
                texts[p_.name] = page.locator("main").inner_text()
            assert all(t.strip() for t in texts.values())
            assert "broken" in texts["overview"] and "orders" in texts["overview"]
        finally:
            browser.close()
