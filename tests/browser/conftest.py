"""A real server and a real headless Chromium for the dashboard's browser tests.

The server is `uvicorn --factory service.api.app:create_app` in a subprocess on a free loopback port
with a temporary SQLite database and two worker processes. The browser is Debian's `chromium`
package driven by Playwright for Python (its own browser download is not used); set
GRADBOOK_CHROMIUM to use another binary. Without a Chromium the tests are skipped, saying so.
Screenshots go to test-artifacts/ at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]
SERVER_START_S = 60.0


def chromium_path() -> str | None:
    explicit = os.environ.get("GRADBOOK_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def pytest_collection_modifyitems(config, items):
    if chromium_path() is not None:
        return
    skip = pytest.mark.skip(reason="browser tests need Chromium: apt-get install -y chromium "
                                   "(or set GRADBOOK_CHROMIUM to a Chromium binary)")
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(folder: Path, stop: str = "terminate", token: str = ""):
    """A gradbook server on a free loopback port over the database in ``folder``; yields its base URL.
    Leaving the block stops it with SIGTERM, or with ``stop="kill"`` SIGKILL (a crash). With
    ``token`` the API wants it as a bearer token."""
    port = free_port()
    env = {**os.environ, "GRADBOOK_DATABASE_URL": f"sqlite:///{folder / 'gradbook.db'}",
           "GRADBOOK_WORKERS": "2", "GRADBOOK_API_TOKEN": token}
    log = open(folder / f"server-{port}.log", "w+b")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"the server did not start:\n{log.read().decode(errors='replace')}")
            time.sleep(0.1)
        yield base
    finally:
        if stop == "kill":
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Base URL of the gradbook server the browser tests share."""
    with running_server(tmp_path_factory.mktemp("dashboard-server")) as base:
        yield base


@pytest.fixture(scope="session")
def api(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh page (1400x1000, like a projector) that fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=server)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def pixels_of(page, chart: str, rgb: tuple[int, int, int]) -> int:
    """Pixels of about colour ``rgb`` on the canvas of chart ``chart`` (its data-chart name)."""
    return page.evaluate("""([chart, rgb]) => {
        const canvas = document.querySelector(`[data-chart="${chart}"] canvas`);
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
            if (Math.abs(data[i] - rgb[0]) < 40 && Math.abs(data[i + 1] - rgb[1]) < 40
                && Math.abs(data[i + 2] - rgb[2]) < 40 && data[i + 3] > 200) n += 1;
        }
        return n;
    }""", [chart, list(rgb)])
