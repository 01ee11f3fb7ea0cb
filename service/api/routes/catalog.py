"""What a job spec can name: the optimizer registry (hyperparameters with types, defaults and ranges,
and the learning-rate schedules) and the ready-made specs (POST one to /jobs as it is)."""

from __future__ import annotations

import optim
from service.api.deps import guarded_router
from service.api.encode import finite
from service.api.errors import SafeJSONResponse
from service.api.schemas import OptimizerList, PresetList
from service.jobs import presets as preset_catalog

router = guarded_router(tags=["catalog"])


@router.get("/optimizers", response_model=OptimizerList, summary="Optimizers and their hyperparameters")
def optimizers():
    """Every optimizer in the registry (built-ins and plug-ins), and the learning-rate schedules."""
    body = {"optimizers": optim.available(), "schedules": optim.available_schedules()}
    return SafeJSONResponse(finite(body))


@router.get("/presets", response_model=PresetList, summary="Preset job specs")
def presets():
    """Name, description and spec of every preset."""
    return {"presets": preset_catalog.describe()}
