"""The job spec: one JSON document that the CLI reads from a file and the REST service accepts.

    {"name": "seed",
     "model": {"layers": [{"units": 1, "activation": "relu"}, {"units": 1, "activation": "relu"}],
               "init": {"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]}},
     "data": {"x": [[1.0]], "y": [[5.0]]},
     "loss": "half_squared_error",
     "optimizer": {"name": "sgd", "lr": 0.1},
     "steps": 100}

Validation happens in two layers. The pydantic models check each field on its own;
:func:`service.jobs.plan.make_plan` checks what needs the data (input width, label ranges, shapes of
explicit init values, limits) and derives everything the trainer needs. For inline and built-in data
the model validator plans at once, so a bad spec fails at submission; CSV files and uploaded
datasets are checked when they are loaded. Every error carries the path of the field it is about,
e.g. ``model.init.w1: expected shape (1, 1), got (2,)``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

import autodiff as ad
import optim
from autodiff import nn
from optim.errors import shown
from service.config import settings
from service.jobs.errors import SpecError, format_loc
from service.jobs.plan import Plan, make_plan

# SpecError and format_loc live in errors.py (plan.py raises them too) and belong to this face as well
__all__ = ["JobSpec", "parse_spec", "SpecError", "format_loc", "friendly_errors", "DataSpec", "InlineData",
           "CsvData", "DatasetRef", "ModelSpec", "Layer", "Init", "OptimizerSpec", "Validation",
           "LOSS_FUNCTIONS", "LOSS_ALIASES"]

PARAM_NAME = re.compile(r"^[wb][1-9][0-9]*$")
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
# the engine's own names, in its order (pydantic lists them so in errors and the JSON schema)
Activation = Literal[tuple(nn.ACTIVATIONS)]
# a loss is named as the engine's function is: binary_cross_entropy_with_logits says, as torch's
# name does, that it takes the outputs as logits (torch's binary_cross_entropy takes probabilities);
# the spec's older name for it stays accepted
LOSS_ALIASES = {"binary_cross_entropy": "binary_cross_entropy_with_logits"}
LOSS_FUNCTIONS = {LOSS_ALIASES.get(name, name): fn for name, fn in nn.LOSSES.items()}
Loss = Literal[tuple(LOSS_FUNCTIONS)]


# strict: true is not 1 and "3" is not 3 (ints stay accepted where floats are expected)
STRICT = ConfigDict(allow_inf_nan=False, strict=True)


class _Strict(BaseModel):
    model_config = ConfigDict(**STRICT, extra="forbid")


# --- model -----------------------------------------------------------------------------------------


class Layer(_Strict):
    units: int = Field(ge=1, description="Output width of this layer.")
    activation: Activation = "relu"


class Init(BaseModel):
    """A scheme for every parameter not given explicitly; explicit values (w1, b1, ...) win."""

    model_config = ConfigDict(**STRICT, extra="allow",
                              json_schema_extra={"additionalProperties": {"type": "array"}})
    scheme: Literal["he", "xavier", "normal"] = "he"
    seed: Seed = 0

    @model_validator(mode="after")
    def _explicit_values(self):
        errors = []
        for name, value in (self.model_extra or {}).items():
            if not PARAM_NAME.match(name):
                errors.append(((name,), "unknown key; expected scheme, seed or parameter names w1, b1, "
                                        "w2, b2, ..."))
                continue
            try:
                arr = np.asarray(_numbers_only(value), dtype=np.float64)
            except (TypeError, ValueError, RecursionError):
                errors.append(((name,), "must be a number or nested lists of numbers with equal lengths"))
                continue
            if not np.all(np.isfinite(arr)):
                errors.append(((name,), "values must be finite"))
        if errors:
            raise _validation_error("Init", errors)
        return self

    def values(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in (self.model_extra or {}).items()}


def _numbers_only(value):
    """``value`` if it is a number or nested lists of numbers; TypeError for booleans, strings, ..."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, list):
            _numbers_only(item)
        elif isinstance(item, bool) or not isinstance(item, int | float):
            raise TypeError(f"not a number: {type(item).__name__}")
    return value


class ModelSpec(_Strict):
    layers: list[Layer] = Field(min_length=1)
    init: Init = Field(default_factory=Init)


# --- data --------------------------------------------------------------------------------------------


class InlineData(_Strict):
    x: list[list[float]] = Field(description="Rows of input features.")
    y: list[list[float]] | list[float] = Field(
        description="Rows of targets; for cross_entropy one column (or a flat list) of class labels.")


class CsvData(_Strict):
    csv: str = Field(min_length=1, description="Path of a CSV file (CLI only).")
    targets: int = Field(1, ge=1, description="How many trailing columns are targets.")


class DatasetRef(_Strict):
    dataset_id: int | str = Field(description="An uploaded dataset (REST service).")


class _Builtin(_Strict):
    seed: Seed = 0

    def values_count(self) -> int:
        return self.n * 3


class XorData(_Builtin):
    dataset: Literal["xor"]
    n: int = Field(4, ge=1)
    noise: float = Field(0.0, ge=0)


class MoonsData(_Builtin):
    dataset: Literal["moons"]
    n: int = Field(200, ge=2)
    noise: float = Field(0.1, ge=0)


class SpiralsData(_Builtin):
    dataset: Literal["spirals"]
    n: int = Field(300, ge=2)
    classes: int = Field(3, ge=2, le=1000)
    noise: float = Field(0.2, ge=0)


class SineData(_Builtin):
    dataset: Literal["sine"]
    n: int = Field(200, ge=1)
    noise: float = Field(0.0, ge=0)

    def values_count(self) -> int:
        return self.n * 2


class LinearData(_Builtin):
    dataset: Literal["linear"]
    n: int = Field(100, ge=1)
    features: int = Field(1, ge=1)
    outputs: int = Field(1, ge=1)
    noise: float = Field(0.1, ge=0)

    def values_count(self) -> int:
        return self.n * (self.features + self.outputs)


BUILTIN_DATA = {m.model_fields["dataset"].annotation.__args__[0]: m
                for m in (XorData, MoonsData, SpiralsData, SineData, LinearData)}
DataSpec = InlineData | CsvData | DatasetRef | XorData | MoonsData | SpiralsData | SineData | LinearData


DATA_FORMS = '{"x": [...], "y": [...]}, {"dataset": NAME, ...}, {"csv": PATH} or {"dataset_id": ID}'


def _pick_data_model(value):
    """Choose the data model from the keys present, so errors speak about that one model."""
    if not isinstance(value, dict):
        if isinstance(value, BaseModel):
            return value  # already validated (a JobSpec built in code)
        raise _validation_error("data", [((), "must be an object: " + DATA_FORMS)])
    if "dataset" in value:
        name = value["dataset"]
        if not isinstance(name, str) or name not in BUILTIN_DATA:
            raise _validation_error("data", [(("dataset",), f"unknown dataset {shown(name)}; choose from "
                                                            f"{', '.join(BUILTIN_DATA)}")])
        return BUILTIN_DATA[name].model_validate(value)
    for key, model in (("csv", CsvData), ("dataset_id", DatasetRef), ("x", InlineData), ("y", InlineData)):
        if key in value:
            return model.model_validate(value)
    raise _validation_error("data", [((), "expected " + DATA_FORMS)])


# --- optimizer and validation --------------------------------------------------------------------------


class OptimizerSpec(BaseModel):
    """``name`` from the optim registry plus that optimizer's hyperparameters, an optional
    ``schedule`` and gradient clipping, exactly as ``optim.create`` takes them."""

    model_config = ConfigDict(**STRICT, extra="allow")
    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _known_to_registry(self):
        # the run length is known only with the plan (make_plan checks again with it): until then any
        # length up to the limit may come
        errors = self.errors(settings().max_steps)
        if errors:
            raise _validation_error("OptimizerSpec", errors)
        return self

    def hyperparameters(self, total_steps: int | None = None) -> dict[str, Any]:
        """The keyword arguments of ``optim.create``; a schedule that omits its run length (cosine's
        t_max, one_cycle's and warmup_cosine's total_steps) runs over ``total_steps``."""
        hyper = dict(self.model_extra or {})
        schedule = hyper.get("schedule")
        schedule = {"name": schedule} if isinstance(schedule, str) else schedule
        kind = optim.schedules.SCHEDULES.get(schedule.get("name")) if isinstance(schedule, dict) else None
        if total_steps is not None and kind is not None and kind.run_length not in (None, *schedule):
            hyper["schedule"] = {**schedule, kind.run_length: total_steps}
        return hyper

    def errors(self, total_steps: int) -> list[tuple[tuple, str]]:
        """What is wrong with name and hyperparameters for a run of ``total_steps``: (loc, message)."""
        return _optimizer_errors(self.name, self.hyperparameters(total_steps))


class Validation(_Strict):
    fraction: float = Field(gt=0, lt=1, description="Share of rows held out (seeded by the job's seed).")
    every: int = Field(1, ge=1, description="Evaluate validation loss every this many steps.")


# --- the job -------------------------------------------------------------------------------------------


class JobSpec(_Strict):
    name: str = Field("job", min_length=1, max_length=200)
    model: ModelSpec
    data: DataSpec
    loss: Loss = "half_squared_error"
    optimizer: OptimizerSpec
    steps: int | None = Field(None, ge=1, description="Updates to make (or give epochs).")
    epochs: int | None = Field(None, ge=1, description="Passes over the training rows (or give steps).")
    batch_size: int | None = Field(None, ge=1, description="Rows per step; default: all of them.")
    shuffle: bool = Field(True, description="Reshuffle the rows every epoch when batch_size is set.")
    seed: Seed = Field(0, description="Seeds the shuffling and the validation split.")
    dtype: Literal["float64", "float32"] = "float64"
    snapshot_every: int | None = Field(None, ge=1, description="Full gradient and parameter snapshots "
                                       "every K steps while they fit the budget (then thinned); default "
                                       "every step up to 10,000 parameters.")
    snapshot_budget_mb: float | None = Field(None, gt=0, description="Megabytes the job's snapshots and "
                                             "replay checkpoints may take; default 64.")
    checkpoint_every: int | None = Field(None, ge=1, description="Resumable checkpoints every K steps.")
    validation: Validation | None = None

    _plan: Plan | None = PrivateAttr(None)

    @field_validator("loss", mode="before")
    @classmethod
    def _canonical_loss(cls, value):
        return LOSS_ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("data", mode="before")
    @classmethod
    def _data_model(cls, value):
        return _pick_data_model(value)

    @model_validator(mode="after")
    def _consistent(self):
        errors = []
        if (self.steps is None) == (self.epochs is None):
            errors.append((("steps",), "give exactly one of steps or epochs"))
        limits = settings()
        if len(self.model.layers) > limits.max_layers:
            errors.append((("model", "layers"), f"{len(self.model.layers)} layers exceed the limit of "
                                                f"{limits.max_layers} (GRADBOOK_MAX_LAYERS)"))
        for i, layer in enumerate(self.model.layers):
            if layer.units > limits.max_units:
                errors.append((("model", "layers", i, "units"), f"{layer.units} exceeds the limit of "
                                                                f"{limits.max_units} (GRADBOOK_MAX_UNITS)"))
        if isinstance(self.data, _Builtin) and self.data.values_count() > limits.max_data_values:
            errors.append((("data", "n"), f"{self.data.n} rows make {self.data.values_count():,} values, "
                                          f"over the limit of {limits.max_data_values:,} "
                                          "(GRADBOOK_MAX_DATA_VALUES)"))
        if errors:
            raise _validation_error("JobSpec", errors)
        if isinstance(self.data, InlineData | _Builtin):
            try:
                self._plan = make_plan(self)
            except SpecError as e:
                raise _validation_error("JobSpec", [(tuple(err["loc"]), err["msg"]) for err in e.errors]) \
                    from None
        return self

    @property
    def n_out(self) -> int:
        return self.model.layers[-1].units

    @property
    def validated_plan(self) -> Plan | None:
        """The plan made while validating (inline and built-in data), which make_plan returns."""
        return self._plan


# --- parsing with friendly errors ----------------------------------------------------------------------


def parse_spec(doc: Any) -> JobSpec:
    """Validate a spec document (a dict from JSON); raise :class:`SpecError` naming each bad field."""
    if not isinstance(doc, dict):
        raise SpecError([{"loc": [], "msg": f"a job spec is a JSON object, got {type(doc).__name__}"}])
    try:
        return JobSpec.model_validate(doc)
    except ValidationError as e:
        raise SpecError(friendly_errors(e)) from None


def friendly_errors(e: ValidationError) -> list[dict]:
    """pydantic's errors as {"loc", "msg"} in our words, each (loc, msg) once."""
    out = []
    for err in e.errors(include_url=False):
        loc = list(err["loc"])
        keep_last = err["type"] == "extra_forbidden"  # there the last part is the user's own key
        loc = [p for p in loc[:len(loc) - keep_last] if p not in _UNION_TAGS] + loc[len(loc) - keep_last:]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if {"loc": loc, "msg": msg} not in out:
            out.append({"loc": loc, "msg": msg})
    return out


# pydantic names the member of a union in the location ("data.y.list[float]"); users never see those
_UNION_TAGS = {"list[list[float]]", "list[float]", "int", "str"} | {m.__name__ for m in DataSpec.__args__}


def _validation_error(title: str, errors: list[tuple[tuple, str]]) -> ValidationError:
    """A pydantic ValidationError whose entries carry our own locations and plain messages."""
    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError("invalid_spec", msg), loc=loc, input=None)
        for loc, msg in errors
    ])


# --- optimizer registry ---------------------------------------------------------------------------------


def _optimizer_errors(name: str, hyper: dict) -> list[tuple[tuple, str]]:
    """Check name and hyperparameters against the optim registry by building the optimizer over a
    one-element dummy parameter: exactly the rules ``optim.create`` applies, nothing duplicated."""
    known = [entry["name"] for entry in optim.available()]
    if name not in known:
        return [(("name",), f"unknown optimizer {shown(name)}; choose from {', '.join(known)}")]
    try:
        optim.create(name, {"p": ad.Tensor(np.zeros(1), requires_grad=True)}, **hyper)
    except optim.HyperparameterError as e:
        return [(_field_of(err), str(err)) for err in e.errors]
    except (ValueError, TypeError) as e:
        return [((), str(e))]
    return []


def _field_of(err) -> tuple:
    """The spec location of one optim error: its field, under ``schedule`` for schedule errors."""
    field = tuple(err.name.split(".")) if err.name else ()
    if str(err).startswith("schedule") and field[:1] != ("schedule",):
        field = ("schedule",) + field
    return field
