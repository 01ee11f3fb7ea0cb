"""The REST training service: ``create_app(settings)`` builds the FastAPI app.

    uvicorn --factory service.api.app:create_app        # settings from GRADBOOK_* variables
    gradbook serve --host 127.0.0.1 --port 8000     # the same through the CLI

On start the app opens the store (migrating it under a lock), marks jobs whose process is gone as
interrupted (a server killed mid-job), starts the executor's workers and hands them the jobs still
queued. While it runs, a sweeper repeats the orphan check every GRADBOOK_RECOVER_SECONDS, so no job
stays "running" after its process died. On shutdown running jobs become interrupted (resumable).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from service.api import errors
from service.api.body import BodyLimit
from service.api.cache import ResponseCache
from service.api.deps import PUBLIC_PATHS
from service.api.errors import SafeJSONResponse
from service.api.origin import SameOriginWrites
from service.api.routes import catalog, datasets, events, export, health, history, jobs, steps
from service.config import ServerSettings
from service.jobs.spec import JobSpec
from service.runtime.executor import make_executor
from service.runtime.sweeper import Sweeper, recover, requeue
from service.store import Store

log = logging.getLogger("gradbook.server")

# PUBLIC_PATHS as the description lists them: /ui/{relative:path} -> /ui/*
_PUBLIC = ", ".join(f"`{path.split('{')[0]}*`" if "{" in path else f"`{path}`" for path in PUBLIC_PATHS)

DESCRIPTION = """Submit training jobs, watch them live, and query the book of every step: the loss,
learning rate and gradient norm, and every parameter's gradient statistics.

Errors are JSON `{"detail": ...}`: a message, or a list of `{loc, msg, type}` naming each bad field.
Non-finite numbers (a diverged loss) are written as `null`.

With `GRADBOOK_API_TOKEN` set, every endpoint needs `Authorization: Bearer <token>` except these,
which anyone may fetch: """ + _PUBLIC + """.

A request that changes anything (POST, PUT, PATCH, DELETE) sent by a web page of another origin gets
403, and a body not declared as the type the endpoint reads (`application/json`, or CSV for
`POST /datasets`) gets 415: no other site can make the user's browser submit or cancel jobs."""


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The app, with ``settings`` or those of the GRADBOOK_* variables."""
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.database_url)
        recover(store)
        executor = make_executor(settings.executor, store, settings.workers)
        app.state.store, app.state.executor = store, executor
        executor.start()
        requeue(store, executor)
        sweeper = Sweeper(store, settings.recover_seconds)
        sweeper.start()
        try:
            yield
        finally:
            sweeper.stop()
            executor.shutdown(wait=True)
            store.close()

    # docs_url and redoc_url off: the dashboard module serves those pages with vendored assets (no CDN).
    app = FastAPI(title="gradbook", version=health.VERSION, description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=SafeJSONResponse, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.response_cache = ResponseCache(settings.response_cache_bytes)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # added after BodyLimit, so it runs before it: a refused body is never read
    app.add_middleware(SameOriginWrites, trusted_origins=settings.trusted_origins)
    if settings.trusted_origins:  # CORS only for origins the operator listed; off by default
        app.add_middleware(CORSMiddleware, allow_origins=settings.trusted_origins, allow_methods=["*"],
                           allow_headers=["*"])
    # One router per resource; the order is the order of the OpenAPI document.
    for module in (health, jobs, history, steps, export, events, datasets, catalog):
        app.include_router(module.router)
    _include_dashboard(app)
    _document_job_spec(app)
    return app


def _include_dashboard(app: FastAPI) -> None:
    try:
        from service.api import dashboard
    except ImportError as e:
        if getattr(e, "name", None) != f"{__package__}.dashboard":
            log.warning("the dashboard could not be loaded: %s", e)
        return
    app.include_router(dashboard.router)


def _document_job_spec(app: FastAPI) -> None:
    """POST /jobs reads its body itself (strict JSON); put the JobSpec schema it expects into the
    OpenAPI document by hand."""

    def build() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            spec = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in {**spec.pop("$defs", {}), "JobSpec": spec}.items():
                if name in components and components[name] != definition:
                    raise RuntimeError(f"OpenAPI schema name {name!r} is used twice")
                components[name] = definition
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build
