"""The review page in a real headless browser: Debian's chromium driven by Playwright
(through executable_path: these machines cannot download Playwright's own builds), against
a mesh of this package's own with token authentication.

Without chromium they fail, saying how to get it: scripts/browser-tools installs it (and
scripts/test runs that first).
"""

from __future__ import annotations

import os

import pytest
from browser_helpers import CHROMIUM, PRINCIPALS, ReviewMesh

from helpers import private_mesh


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.path.isfile(CHROMIUM):
        pytest.fail(f"no chromium at {CHROMIUM}: run scripts/browser-tools (as root) to install Debian's, "
                    "or point GRAPHMESH_CHROMIUM at one")
    return CHROMIUM


@pytest.fixture(scope="module")
def review_mesh():
    with private_mesh("review-page", auth="token", workers=1) as mesh:
        tokens = {name: mesh.create_token(name, roles, created_by="browser tests")[1]
                  for name, roles in PRINCIPALS.items()}
        yield ReviewMesh(mesh, tokens)


# Module scope, not session: Playwright's sync API holds an event loop on the main thread
# while it runs, and later tests call asyncio.run().
@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page
