"""Ready-made job specs (POST one to /jobs as it is)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.api.deps import require_token
from service.api.schemas import ErrorOut, PresetList
from service.jobs import presets as catalog

router = APIRouter(tags=["catalog"], dependencies=[Depends(require_token)],
                   responses={401: {"model": ErrorOut, "description": "Missing or wrong bearer token."}})


@router.get("/presets", response_model=PresetList, summary="Preset job specs")
def presets():
    """Name, description and spec of every preset."""
    return {"presets": catalog.describe()}
