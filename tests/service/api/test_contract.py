"""The OpenAPI contract, checked by schemathesis over every operation: whatever it generates (valid
and invalid parameters, bodies from the JobSpec schema, random CSV), the server never answers 5xx,
answers only the status codes it documents, and every answer matches its documented schema.

Limits are set tiny so that the specs schemathesis happens to make valid train in milliseconds.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.config import ServerSettings
from service.jobs import presets
from service.runtime.runner import run_job

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY_LIMITS = {"GRADBOOK_MAX_STEPS": "20", "GRADBOOK_MAX_UNITS": "4", "GRADBOOK_MAX_LAYERS": "3",
               "GRADBOOK_MAX_DATA_VALUES": "300", "GRADBOOK_MAX_PARAMS": "100"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# schemathesis collects the operations at import, so the app is made here (its lifespan - database,
# workers - starts in the fixture below).
DB_DIR = Path(tempfile.mkdtemp(prefix="gradbook-contract-"))
APP = create_app(ServerSettings(database_url=f"sqlite:///{DB_DIR / 'gradbook.db'}", executor="thread",
                                workers=1))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def running_app():
    """The app's lifespan entered (store, worker threads) for the whole module, with a finished job
    and a dataset at id 1 so that small generated ids find something."""
    patch = pytest.MonkeyPatch()
    for key, value in TINY_LIMITS.items():
        patch.setenv(key, value)
    with TestClient(APP) as client:
        store = APP.state.store
        doc = presets.get("seed")
        doc["steps"] = 5
        run_job(store, store.create_job("seed", doc))
        client.post("/datasets", content="x,y\n1,2\n3,4\n", headers={"Content-Type": "text/csv"})
        yield APP
    patch.undo()
    shutil.rmtree(DB_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case):
    case.call_and_validate(checks=CHECKS)
