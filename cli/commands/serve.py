"""`gradbook serve`: the REST training service on the database the CLI uses."""

from __future__ import annotations

from typing import Annotated

import typer

import service
from cli.options import DatabaseUrl, fail
from cli.render import err


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (GRADBOOK_HOST; default "
                                                  "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (GRADBOOK_PORT; default "
                                                                    "8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Training worker processes (GRADBOOK_WORKERS; "
                                                            "default one per core).")] = None,
    database_url: DatabaseUrl = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
):
    """Run the REST training service (FastAPI on uvicorn) on the same database the CLI uses."""
    import uvicorn

    from service.api.app import create_app

    try:
        settings = service.ServerSettings.from_env(host=host, port=port, workers=workers,
                                                   database_url=database_url)
    except ValueError as e:
        fail(str(e))
    token_note = ("bearer token required" if settings.api_token
                  else "no token (set GRADBOOK_API_TOKEN to require one)")
    err.print(f"gradbook serving on http://{settings.host}:{settings.port} with {settings.workers} "
              f"worker(s); {token_note}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)
