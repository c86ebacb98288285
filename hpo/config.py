"""The sweep file's shape: pydantic models of one ``SweepConfig`` and its parameters.

Models only: reading a file into them is ``hpo.loading``, the rules across fields are ``hpo.rules``.
Each field validator raises with what was given and what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from hpo import defaults
from hpo.compress_block import CompressBlock

Scalar = str | int | float | bool
Method = Literal["grid", "random", "bayes"]
SamplerName = Literal["tpe", "gp", "cmaes", "nsga2"]
Goal = Literal["maximize", "minimize"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- parameters ------------------------------------------------------------------------------------
class _Param(_Model):
    when: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict,
        description="exists only when each named parameter takes the given value (or one of the list)",
    )

    def condition(self) -> dict[str, tuple[Scalar, ...]]:
        """``when`` with every right-hand side as a tuple of allowed values."""
        return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in self.when.items()}


class Fixed(_Param):
    """A value every trial gets: ``dropout: 0.1`` or ``{value: 0.1, when: {...}}``."""

    kind: Literal["fixed"] = "fixed"
    value: Scalar | list[Scalar]


class Choice(_Param):
    """A categorical parameter: ``{values: [sgd, adam]}``."""

    kind: Literal["choice"] = "choice"
    values: list[Scalar] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: list[Scalar]) -> list[Scalar]:
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"values must be distinct, got {values}")
        return values


class Range(_Param):
    """A distribution: ``{distribution: log_uniform, min: 1e-4, max: 0.1}`` (bounds inclusive)."""

    kind: Literal["range"] = "range"
    distribution: Literal["uniform", "log_uniform", "int", "int_log"]
    min: float
    max: float
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> Range:
        for name, bound in (("min", self.min), ("max", self.max), ("step", self.step)):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{name} must be a finite number, got {bound}")
        if self.min > self.max:
            raise ValueError(
                f"min <= max must hold, got min={self.min:g}, max={self.max:g}; swap them"
            )
        if self.distribution in ("log_uniform", "int_log") and self.min <= 0:
            raise ValueError(
                f"a {self.distribution} distribution needs min > 0, got min={self.min:g}; "
                "use distribution: uniform (or int) for ranges that include 0"
            )
        if self.distribution in ("int", "int_log"):
            for name, bound in (("min", self.min), ("max", self.max)):
                if not float(bound).is_integer():
                    raise ValueError(f"an {self.distribution} distribution needs integer {name}, got {bound}")
            if self.step is not None and not float(self.step).is_integer():
                raise ValueError(f"an {self.distribution} distribution needs an integer step, got {self.step}")
        if self.step is not None and (self.distribution == "log_uniform" or self.step != 1) and self.is_log:
            allowed = "no step" if self.distribution == "log_uniform" else "no step or step: 1"
            article = "an" if self.distribution == "int_log" else "a"
            raise ValueError(f"{article} {self.distribution} distribution takes {allowed}, got step={self.step:g}; "
                             "use uniform or int for stepped values")
        return self

    @property
    def is_int(self) -> bool:
        return self.distribution in ("int", "int_log")

    @property
    def is_log(self) -> bool:
        return self.distribution in ("log_uniform", "int_log")

    def grid_values(self) -> list[float | int] | None:
        """The points of this range in a grid, or None when it is continuous."""
        if self.is_int:
            step = int(self.step or 1)
            return list(range(int(self.min), int(self.max) + 1, step))
        if self.step is None:
            return None
        count = int((self.max - self.min) / self.step + 1e-9) + 1
        return [round(self.min + i * self.step, 12) for i in range(count)]


_MARKERS = {"values": "choice", "distribution": "range", "value": "fixed"}
Param = Annotated[Fixed | Choice | Range, Field(discriminator="kind")]

PARAM_KEYS = {"fixed": set(Fixed.model_fields), "choice": set(Choice.model_fields), "range": set(Range.model_fields)}


def tag_param(raw: Any) -> Any:
    """Give a parameter's raw YAML value the ``kind`` pydantic discriminates on."""
    if not isinstance(raw, dict):
        return {"kind": "fixed", "value": raw}
    if "kind" in raw:
        return raw
    if "values" in raw:
        return {"kind": "choice", **raw}
    if "distribution" in raw:
        return {"kind": "range", **raw}
    if "value" in raw:
        return {"kind": "fixed", **raw}
    for key in raw:  # a misspelt marker key: tag by it so the error can say "did you mean"
        match = difflib.get_close_matches(str(key), list(_MARKERS), n=1, cutoff=0.6)
        if match:
            return {"kind": _MARKERS[match[0]], **raw}
    raise ValueError(
        "a parameter is a plain value, {values: [...]}, {distribution: ..., min: ..., max: ...} "
        f"or {{value: ...}}; got keys {sorted(raw)}"
    )


# -- the rest of the sweep -------------------------------------------------------------------------
class Metric(_Model):
    name: str = "val_loss"
    goal: Goal = "minimize"

    @property
    def mode(self) -> Literal["max", "min"]:
        return "max" if self.goal == "maximize" else "min"


MIN_TIMEOUT_S = 1.0  # the shortest trial or report timeout: below it no trial could ever report


class Budget(_Model):
    trials: int | None = Field(default=None, ge=1, description="trials to run (random/bayes); grid runs all points")
    max_concurrent: int | None = Field(default=None, ge=1)
    time_limit_s: float | None = Field(default=None, gt=0)
    max_failures: int = Field(default=0, ge=0, description="retries of a trial whose process fails or dies")
    trial_timeout_s: float | None = Field(default=None, description="end a trial (FAILED) that runs longer than this")
    report_timeout_s: float | None = Field(
        default=None, description="end a trial (FAILED) that reports nothing for this long; default: the stall rule "
        "(hpo.timeouts)",
    )

    @field_validator("trial_timeout_s", "report_timeout_s")
    @classmethod
    def _timeout(cls, seconds: float | None) -> float | None:
        if seconds is not None and not (math.isfinite(seconds) and seconds >= MIN_TIMEOUT_S):
            raise ValueError(f"must be at least {MIN_TIMEOUT_S:g} s (a trial's process alone takes about that long "
                             f"to start), got {seconds:g}; remove it for no limit")
        return seconds


class EarlyStop(_Model):
    type: Literal["none", "asha", "hyperband", "median"] = "none"
    grace_epochs: int = Field(default=1, ge=1, description="epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(default=3.0, gt=1)
    brackets: int = Field(default=3, ge=1, description="hyperband: number of brackets")


class Resources(_Model):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)


class Confirm(_Model):
    """Re-run the search's top configurations with fresh seeds after the search (``hpo.confirm``)."""

    top: int = Field(default=3, ge=2, le=20, description="configurations to confirm: the search's best `top` trials")
    seeds: int = Field(default=5, ge=2, le=50, description="fresh seeds per configuration (2+ for an interval)")


DATA_FILE_SUFFIXES = (".csv", ".parquet", ".npz")
_SPEC = "'package.module:function'"


class Trainer(_Model):
    task: str | None = Field(default=None, description="built-in task: " + ", ".join(defaults.TASKS))
    function: str | None = Field(default=None, description="your own loop: 'package.module:function'")
    model: str | None = Field(
        default=None,
        description="your own model for the built-in loop: 'package.module:build_model', called as "
        "build_model(config, input_shape, n_outputs) -> torch.nn.Module; with task, data or data_file",
    )
    data: str | None = Field(
        default=None,
        description="your own data for the built-in loop: 'package.module:load_data', called as "
        "load_data(config) -> (x_train, y_train, x_val, y_val) or (x_train, y_train, x_val, y_val, x_test, y_test); "
        "integer y = classification, float y = regression",
    )
    data_file: str | None = Field(
        default=None,
        description="a table for the built-in loop: .csv or .parquet (with `target`) or .npz (arrays X, y); "
        "relative to the folder hpo runs in; split with the val_fraction (and test_fraction) settings",
    )
    target: str | None = Field(default=None, description="the column of data_file (.csv/.parquet) to predict")
    test_file: str | None = Field(
        default=None,
        description="a test set for data_file, in the same layout (same suffix, features and target); read once, "
        "for the winner, after the search. Or hold out a share of data_file with options.test_fraction; with "
        "neither, the sweep has no test estimate",
    )
    epochs: int = Field(default=10, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="fixed trainer settings")
    reports: list[str] | None = Field(default=None, description="metrics a custom function reports")

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str | None) -> str | None:
        if task is not None and task not in defaults.TASKS:
            raise ValueError(
                f"unknown task {task!r}{did_you_mean(task, set(defaults.TASKS))}; "
                f"built-in tasks: {', '.join(defaults.TASKS)}"
            )
        return task

    @field_validator("function", "model", "data")
    @classmethod
    def _function_path(cls, function: str | None) -> str | None:
        if function is not None and (":" not in function or function.startswith(":") or function.endswith(":")):
            raise ValueError(f"must look like {_SPEC}, got {function!r}")
        return function

    @field_validator("data_file", "test_file")
    @classmethod
    def _file_kind(cls, path: str | None) -> str | None:
        if path is not None and Path(path).suffix.lower() not in DATA_FILE_SUFFIXES:
            raise ValueError(f"must end in {', '.join(DATA_FILE_SUFFIXES)}, got {path!r}")
        return path

    @model_validator(mode="after")
    def _one_kind(self) -> Trainer:
        given = [name for name in ("task", "function", "data", "data_file") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of trainer.task (a built-in task: " + ", ".join(defaults.TASKS)
                + f"), trainer.function ({_SPEC}), trainer.data ('package.module:load_data') or "
                f"trainer.data_file (.csv, .parquet, .npz), got {', '.join(given) or 'none'}"
            )
        if self.model is not None and self.function is not None:
            raise ValueError("trainer.model plugs a model into the built-in loop; a trainer.function builds its own "
                             "model: remove trainer.model")
        table = self.data_file is not None and Path(self.data_file).suffix.lower() in (".csv", ".parquet")
        if table and self.target is None:
            raise ValueError(f"trainer.data_file {self.data_file!r} is a table: name the column to predict "
                             "in trainer.target")
        if not table and self.target is not None:
            raise ValueError("trainer.target names a column of a .csv/.parquet trainer.data_file; remove it "
                             "(.npz files hold arrays X and y)")
        if self.test_file is not None:
            self._check_test_file()
        return self

    def _check_test_file(self) -> None:
        if self.data_file is None:
            raise ValueError(f"trainer.test_file ({self.test_file!r}) is the test set of a trainer.data_file; "
                             "remove it (a trainer.data function returns its test arrays itself; built-in tasks "
                             "have their own test split)")
        if Path(str(self.test_file)).suffix.lower() != Path(self.data_file).suffix.lower():
            raise ValueError(f"trainer.test_file ({self.test_file!r}) must have the layout of trainer.data_file "
                             f"({self.data_file!r}): use the same suffix")
        if "test_fraction" in self.options:
            raise ValueError("give trainer.test_file or trainer.options.test_fraction, not both: one test split")

    @property
    def user_parts(self) -> dict[str, str]:
        """Your own model / data / data file for the built-in loop (empty for built-in tasks)."""
        fields = ("model", "data", "data_file", "target", "test_file")
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}


class Ray(_Model):
    """Where trials run: ``{address: auto | HOST:PORT | ray://HOST:PORT}``; a local Ray when absent."""

    address: str | None = Field(default=None, description="auto, HOST:PORT (GCS) or ray://HOST:PORT (Ray Client)")

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        if address is not None and not re.fullmatch(r"auto|(ray://)?[A-Za-z0-9_.\-]+:[0-9]{1,5}", address):
            raise ValueError(f"must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
        return address


class SweepConfig(_Model):
    """One validated sweep: what to search, how, and where results go."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    experiment: str | None = None
    method: Method = "bayes"
    sampler: SamplerName | None = None
    metric: Metric = Field(
        default_factory=Metric,
        description="what to optimise: {name, goal}, or a list of them for a multi-objective sweep (the first "
        "objective here, all of them in `objectives`)",
    )
    objective_list: tuple[Metric, ...] = Field(default=(), exclude=True, description="set from a `metric:` list")
    budget: Budget = Field(default_factory=Budget)
    early_stop: EarlyStop = Field(default_factory=EarlyStop)
    seed: int = Field(default=0, ge=0)
    trainer: Trainer
    parameters: dict[str, Param] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    workers: int = Field(default=1, ge=1, description="DDP workers per trial (Ray Train), each with `resources`")
    tracking_uri: str | None = None
    ray: Ray = Field(default_factory=Ray)
    confirm: Confirm | None = Field(
        default=None, description="{top: 3, seeds: 5}: re-run the top configurations with fresh seeds; off when absent",
    )
    compress: CompressBlock | None = Field(
        default=None, description="run the compression stage (hpo compress) on the winner once the search is done")

    @model_validator(mode="before")
    @classmethod
    def _metric_list(cls, raw: Any) -> Any:
        """``metric: [{...}, {...}]``: the first objective stays ``metric`` (what single-objective code reads),
        all of them go to ``objective_list``; each item is checked here so errors name ``metric[i].field``."""
        if not isinstance(raw, dict):
            return raw
        if "objective_list" in raw:
            raise ValueError("unknown key 'objective_list'; give several objectives as a list under metric")
        items = raw.get("metric")
        if not isinstance(items, list):
            return raw
        if not items:
            raise ValueError("metric: an empty list names no objective; give {name, goal} or a list of them")
        metrics = []
        for i, item in enumerate(items):
            try:
                metrics.append(Metric.model_validate(item))
            except ValidationError as e:
                detail = e.errors(include_url=False)[0]
                where = ".".join(str(p) for p in detail["loc"])
                if detail["type"] == "extra_forbidden":
                    raise ValueError(f"metric[{i}]: unknown key {where!r}; allowed keys here: goal, name") from None
                given = f"; got {detail['input']!r}" if detail["type"] != "missing" else ""
                raise ValueError(f"metric[{i}]{'.' + where if where else ''}: {detail['msg']}{given}") from None
        names = [m.name for m in metrics]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"metric: each objective once, got {', '.join(repeated)} more than once")
        return {**raw, "metric": metrics[0], "objective_list": tuple(metrics)}

    @field_serializer("metric")
    def _metric_as_given(self, metric: Metric) -> Any:
        """A multi-objective sweep dumps its list, so the resolved config loads back to the same sweep."""
        if len(self.objective_list) > 1:
            return [m.model_dump() for m in self.objective_list]
        return metric.model_dump()

    @model_validator(mode="after")
    def _workers_need_the_loop(self) -> SweepConfig:
        if self.workers > 1 and self.trainer.function is not None:
            raise ValueError(
                f"workers: {self.workers} runs the built-in loop on DDP workers, but trainer.function runs your "
                "own loop; set workers: 1 (or use trainer.task / data / data_file)"
            )
        return self

    @model_validator(mode="after")
    def _confirm_one_objective(self) -> SweepConfig:
        if self.confirm is not None and self.multi_objective:
            raise ValueError(
                f"confirm ranks configurations by the mean of one metric and this sweep has {len(self.objectives)} "
                "objectives (a Pareto front has no single winner to confirm); remove confirm or keep one objective"
            )
        return self

    @field_validator("parameters", mode="before")
    @classmethod
    def _kinds(cls, raw: Any) -> Any:
        if raw is None:  # `parameters:` with nothing under it: no parameters, which the rules refuse by name
            return {}
        if not isinstance(raw, dict):
            return raw
        return {name: tag_param(value) for name, value in raw.items()}

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """Every objective, the first being ``metric``: one for a single-objective sweep."""
        return self.objective_list if len(self.objective_list) > 1 else (self.metric,)

    @property
    def multi_objective(self) -> bool:
        """True when ``metric`` is a list of two or more objectives: the result is a Pareto front."""
        return len(self.objectives) > 1

    @property
    def sampler_name(self) -> str:
        """The Optuna sampler the method runs on: grid, random, tpe, gp, cmaes or nsga2."""
        if self.method == "bayes":
            return self.sampler or "tpe"
        return self.method

    @property
    def max_epochs(self) -> int:
        """Longest a trial can train: the top of a tuned ``epochs`` range, else ``trainer.epochs``."""
        param = self.parameters.get("epochs")
        if isinstance(param, Fixed) and isinstance(param.value, int | float) and not isinstance(param.value, bool):
            return int(param.value)
        if isinstance(param, Choice):
            return int(max(v for v in param.values if isinstance(v, int | float)))
        if isinstance(param, Range):
            return int(param.max)
        return int(self.trainer.options.get("epochs", self.trainer.epochs))


def did_you_mean(word: str, candidates: set[str]) -> str:
    """`` (did you mean 'x'?)`` for the one candidate close to ``word``, else an empty string."""
    prefixed = [c for c in sorted(candidates) if c.startswith(word) and len(word) >= 3]
    match = prefixed[:1] if len(prefixed) == 1 else difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def flatten(value: Any, *, keep_empty: bool = False, prefix: str = "") -> dict[str, Any]:
    """A nested mapping (a dumped config) as ``{"dotted.name": value}``.

    ``keep_empty``: an empty mapping stays as a key of its own (``trainer.options: {}``), so comparing
    two configs sees it; MLflow params (which cannot hold a mapping) leave it out.
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, keep_empty=keep_empty, prefix=f"{prefix}{key}."))
        return out or ({prefix.rstrip("."): {}} if keep_empty else {})
    return {prefix.rstrip("."): value}

