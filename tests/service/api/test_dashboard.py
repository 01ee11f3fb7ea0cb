"""The browser pages' files as the server hands them out: the dashboard at /, the API docs at /docs and
/redoc, static files with the right types, nothing outside the static folder, vendored code with its
license, and no reference to any other host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api import dashboard

STATIC = Path(dashboard.__file__).parent / "static"
FILES = sorted(p for p in STATIC.rglob("*") if p.is_file())
TEXT_SUFFIXES = {".html", ".js", ".css", ".svg", ".json", ".txt", ""}


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    app.include_router(dashboard.router)
    return TestClient(app)


def rel(path: Path) -> str:
    return path.relative_to(STATIC).as_posix()


def test_index_is_the_dashboard_page(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert '<main id="app">' in r.text
    assert '<script type="module" src="/ui/js/app.js">' in r.text


@pytest.mark.parametrize(("suffix", "content_type"), [
    (".html", "text/html; charset=utf-8"),
    (".js", "text/javascript; charset=utf-8"),
    (".css", "text/css; charset=utf-8"),
    (".svg", "image/svg+xml"),
])
def test_static_files_are_served_with_their_type(client, suffix, content_type):
    files = [p for p in FILES if p.suffix == suffix]
    assert files, f"no {suffix} file in the dashboard"
    for path in files:
        r = client.get(f"/ui/{rel(path)}")
        assert r.status_code == 200, rel(path)
        assert r.headers["content-type"] == content_type, rel(path)
        assert r.content == path.read_bytes()


@pytest.mark.parametrize("path", [
    "/ui/../dashboard.py", "/ui/%2e%2e/dashboard.py", "/ui/..%2fdashboard.py", "/ui/js/../../dashboard.py",
    "/ui/", "/ui/js", "/ui/nothing-here.js", "/ui/%2fetc%2fpasswd",
])
def test_nothing_outside_the_static_files_is_served(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "import" not in r.text  # certainly not Python source


def test_every_file_the_pages_load_exists():
    """index.html's /ui/ references and every relative ES-module import resolve to a real file
    (a typo would only show as a blank page in the browser)."""
    index = (STATIC / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="/ui/([^"]+)"', index)
    assert "js/app.js" in refs and "vendor/uplot/uPlot.iife.min.js" in refs
    for ref in refs:
        assert (STATIC / ref).is_file(), ref
    modules = [p for p in FILES if p.suffix == ".js" and "vendor" not in p.parts]
    assert len(modules) >= 8
    for module in modules:
        for spec in re.findall(r'^\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"', module.read_text(), re.M):
            assert spec.startswith("."), f"{rel(module)} imports {spec!r}: only relative imports work offline"
            assert (module.parent / spec).resolve().is_file(), f"{rel(module)} imports missing {spec}"


def test_vendored_uplot_carries_its_license():
    vendor = STATIC / "vendor" / "uplot"
    license_text = (vendor / "LICENSE").read_text()
    assert "MIT License" in license_text and "Leon Sorokin" in license_text
    banner = (vendor / "uPlot.iife.min.js").read_text()[:100]
    assert re.match(r"/\*! https://github\.com/leeoniya/uPlot \(v1\.6\.\d+\) \*/", banner)
    for folder in (STATIC / "vendor").iterdir():
        assert (folder / "LICENSE").is_file(), f"vendor/{folder.name} has no LICENSE"


def test_vendored_api_docs_carry_their_licenses():
    swagger, redoc = STATIC / "vendor" / "swagger-ui", STATIC / "vendor" / "redoc"
    assert "Apache License" in (swagger / "LICENSE").read_text()
    assert "SmartBear" in (swagger / "NOTICE").read_text()  # Apache 2.0: the NOTICE travels with the code
    assert "MIT License" in (redoc / "LICENSE").read_text() and "Rebilly" in (redoc / "LICENSE").read_text()
    # the bundles name the file that lists the licenses of the code bundled into them
    for bundle in DOCS_BUNDLES:
        banner = (STATIC / bundle).read_text()[:100]
        assert f"see {Path(bundle).name}.LICENSE.txt" in banner
        assert (STATIC / f"{bundle}.LICENSE.txt").is_file()


# Allowed mentions of a URL that the browser never fetches: XML namespace names, and the
# "/*! https://github.com/... */" provenance banner that minified vendor files keep.
NAMESPACES = re.compile(r"http://www\.w3\.org/(2000/svg|1999/xlink|1999/xhtml)")
BANNER = re.compile(r"/\*!.*?\*/", re.S)
EXTERNAL = re.compile(r"""(?ix)
    [a-z][a-z0-9+.-]*://          # any scheme with an authority: http://, https://, ws://, ftp://
  | ["'(=]\s*//[a-z0-9]           # protocol-relative: src="//cdn..." or url(//...)
  | @import\s+(url\()?["']?(?!/ui/|\.)  # a stylesheet from elsewhere
""")


@pytest.mark.parametrize(("text", "external"), [
    ('<script src="https://cdn.example.com/x.js">', True),
    ('<link href="//fonts.example.com/a.css">', True),
    ("background: url(//example.com/a.png)", True),
    ('fetch("http://10.0.0.1/jobs")', True),
    ('new WebSocket("wss://example.com")', True),
    ("@import 'https://example.com/a.css';", True),
    ('<script src="/ui/js/app.js">', False),
    ('import { h } from "./dom.js";', False),
    ("const x = a // b;", False),
    ('createElementNS("http://www.w3.org/2000/svg", "svg")', False),
])
def test_the_host_check_tells_local_from_external(text, external):
    assert (EXTERNAL.search(NAMESPACES.sub("", text)) is not None) is external


# The API docs' bundles (Swagger UI, ReDoc) are third-party code that holds URLs as link targets and
# JSON-schema identifiers; that they fetch nothing from elsewhere is what the browser test checks, by
# loading /docs with every other host blocked.
DOCS_BUNDLES = {"vendor/swagger-ui/swagger-ui-bundle.js", "vendor/redoc/redoc.standalone.js"}
LICENSE_FILES = re.compile(r"LICENSE|NOTICE")


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix in TEXT_SUFFIXES and rel(p) not in DOCS_BUNDLES
                                  and not LICENSE_FILES.search(p.name)], ids=rel)
def test_no_file_refers_to_another_host(path):
    text = path.read_text(encoding="utf-8")
    text = NAMESPACES.sub("", text)
    if "vendor" in path.parts:
        text = BANNER.sub("", text)
    found = EXTERNAL.search(text)
    context = "" if found is None else text[max(0, found.start() - 60):found.end() + 60]
    assert found is None, f"{rel(path)} refers to another host: ...{context}..."


def test_the_service_app_serves_the_dashboard():
    from service.api.app import create_app

    client = TestClient(create_app())  # no `with`: the app's workers and database are not started
    r = client.get("/")
    assert r.status_code == 200 and '<main id="app">' in r.text
    assert client.get("/ui/app.css").headers["content-type"] == "text/css; charset=utf-8"
    paths = client.get("/openapi.json").json()["paths"]
    assert "/jobs" in paths and "/" not in paths and not any(p.startswith("/ui") for p in paths)


ASSET = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: '([^']+)'""")


@pytest.mark.parametrize(("page", "needs"), [
    ("/docs", ["/ui/vendor/swagger-ui/swagger-ui-bundle.js", "/ui/vendor/swagger-ui/swagger-ui.css"]),
    ("/redoc", ["/ui/vendor/redoc/redoc.standalone.js"]),
])
def test_the_api_docs_load_only_assets_the_server_serves(page, needs):
    """The docs pages worked only online (Swagger UI and ReDoc from a CDN, fonts from Google): every
    asset they name is now a path on this server, and the server serves it."""
    from service.api.app import create_app

    client = TestClient(create_app())
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"].startswith("default-src 'self';")  # nothing from elsewhere
    assert not EXTERNAL.search(r.text), r.text
    refs = {a or b for a, b in ASSET.findall(r.text)}
    assert set(needs) | {"/openapi.json"} <= refs
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        answer = client.get(ref)
        assert answer.status_code == 200, ref
        assert answer.content, ref
