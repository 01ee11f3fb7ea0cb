"""The API docs in a real Chromium with no network beyond the server: /docs (Swagger UI) and /redoc
(ReDoc) render every operation from vendored assets, and ask no other host for anything."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from .conftest import screenshot

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture
def offline(page):
    """The page with every request to another host blocked; yields the list of the blocked URLs.
    The console's errors (a script the page's policy refused, say) fail the test too."""
    blocked: list[str] = []
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)

    def only_local(route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    yield blocked
    # ReDoc's sidebar shows its maker's logo from a CDN; the docs' policy refuses it, and the
    # link beside it still reads "API docs by Redocly".
    console = [text for text in console if "https://cdn.redoc.ly/redoc/logo-mini.svg" not in text]
    assert console == [], f"errors in the browser console: {console}"


def test_swagger_ui_renders_the_operations_offline(page, offline):
    page.goto("/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/jobs']")
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
    assert {"/health", "/jobs", "/jobs/{job_id}/cancel", "/datasets"} <= set(paths)
    assert "gradbook" in page.inner_text(".info .title")
    screenshot(page, "api-docs")
    assert offline == [], f"/docs asked other hosts for {offline}"


def test_redoc_renders_the_operations_offline(page, offline):
    page.goto("/redoc")
    page.wait_for_selector("h2:has-text('Submit a job')")
    assert page.locator("h2:has-text('Cancel a job')").count() == 1
    assert offline == [], f"/redoc asked other hosts for {offline}"
