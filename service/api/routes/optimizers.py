"""The optimizer registry as the API shows it: names, hyperparameters with types, defaults and ranges."""

from __future__ import annotations

from fastapi import APIRouter, Depends

import optim
from service.api.deps import require_token
from service.api.encode import finite
from service.api.errors import SafeJSONResponse
from service.api.schemas import ErrorOut, OptimizerList

router = APIRouter(tags=["catalog"], dependencies=[Depends(require_token)],
                   responses={401: {"model": ErrorOut, "description": "Missing or wrong bearer token."}})


@router.get("/optimizers", response_model=OptimizerList, summary="Optimizers and their hyperparameters")
def optimizers():
    """Every optimizer in the registry (built-ins and plug-ins), and the learning-rate schedules."""
    body = {"optimizers": optim.available(), "schedules": optim.available_schedules()}
    return SafeJSONResponse(finite(body))
