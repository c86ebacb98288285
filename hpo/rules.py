"""Rules a sweep must meet beyond its shape: something to search, the space's conditions, the method,
the trainer's catalog, the user's own functions and files, the metric.

``hpo.loading.validate`` runs :func:`check` on every sweep file; the CLI and the runner ask
:func:`trials_planned`. Every function raises ``ConfigError`` naming ``source``, the field path, the
value given and what is allowed. Nothing here imports torch, Ray or MLflow.
"""

from __future__ import annotations

from typing import Any

from hpo import compress_block, objectives, space
from hpo.config import Choice, Fixed, Range, SweepConfig, did_you_mean
from hpo.errors import ConfigError
from hpo.split_rules import check_split
from trainers import catalog
from trainers.tasks import CLASSIFICATION_METRICS, REGRESSION_METRICS, TASKS

MAX_GRID_POINTS = 10_000
DEFAULT_TRIALS = 10


def check(config: SweepConfig, *, source: str) -> None:
    """Run every rule; the first broken one raises.

    Raises:
        ConfigError: naming ``source``, the field path, the value given and what is allowed.
    """
    _check_something_to_search(config, source)
    _check_conditions(config, source)
    _check_method(config, source)
    compress_block.check(config.compress, config.trainer, source=source)  # before importing the user's parts
    if config.trainer.function is None:
        _check_catalog(config, source)
        _check_user_parts(config, source)
        check_split(config, source, lambda path, field: _check_data_file(path, config.trainer.target, source, field))
    else:
        _check_function(config, source)
    _check_metric(config, source)
    _check_early_stop(config, source)


# -- something to search --------------------------------------------------------------------------
_FIX_NOTHING = (
    "give at least one parameter values or a distribution, e.g. `lr: {values: [0.01, 0.1]}` or "
    "`lr: {distribution: log_uniform, min: 1.0e-4, max: 0.1}`"
)


def _check_something_to_search(config: SweepConfig, source: str) -> None:
    """A sweep whose every trial would get the same configuration runs the same training N times."""
    if not config.parameters:
        raise ConfigError(f"no parameters, so there is nothing to search; {_FIX_NOTHING}",
                          source=source, field="parameters")
    if all(isinstance(p, Fixed) for p in config.parameters.values()):
        raise ConfigError(
            f"every parameter is fixed ({', '.join(config.parameters)}), so every trial would train the same "
            f"configuration and there is nothing to search; {_FIX_NOTHING} (fixed settings may also go in "
            "trainer.options)",
            source=source, field="parameters",
        )


# -- conditions ------------------------------------------------------------------------------------
def _check_conditions(config: SweepConfig, source: str) -> None:
    params = config.parameters
    for name, param in params.items():
        for parent, allowed in param.condition().items():
            field = f"parameters.{name}.when.{parent}"
            if parent == name:
                raise ConfigError("a parameter cannot depend on itself", source=source, field=field)
            if parent not in params:
                hint = did_you_mean(parent, set(params))
                raise ConfigError(
                    f"refers to parameter {parent!r}, which is not defined{hint}; defined: {', '.join(params)}",
                    source=source, field=field,
                )
            parent_param = params[parent]
            if isinstance(parent_param, Range):
                raise ConfigError(
                    f"conditions may only refer to a choice or fixed parameter; {parent!r} is a "
                    f"{parent_param.distribution} range",
                    source=source, field=field,
                )
            possible = _possible_values(parent_param)
            for value in allowed:
                if not space.contains(possible, value):
                    raise ConfigError(
                        f"{parent} never takes the value {value!r}; it takes {', '.join(map(repr, possible))}",
                        source=source, field=field,
                    )
    order = space.ordered(params)
    for i, name in enumerate(order):
        missing = [dep for dep in params[name].when if dep not in order[:i]]
        if missing:
            raise ConfigError(
                f"conditions form a cycle through {', '.join([name, *missing])}", source=source,
                field=f"parameters.{name}.when",
            )


def _possible_values(param: Fixed | Choice | Range) -> list[Any]:
    if isinstance(param, Fixed):
        return [param.value]
    if isinstance(param, Choice):
        return list(param.values)
    return []


# -- method, sampler, budget -----------------------------------------------------------------------
def _check_method(config: SweepConfig, source: str) -> None:
    method = config.method
    if config.sampler is not None and method != "bayes":
        raise ConfigError(
            f"sampler applies to method bayes only; method {method} uses its own sampler, got sampler={config.sampler}",
            source=source, field="sampler",
        )
    if method == "grid":
        _check_grid(config, source)
    if config.sampler_name in ("gp", "cmaes"):
        conditional = [n for n, p in config.parameters.items() if p.when]
        if conditional:
            raise ConfigError(
                f"sampler {config.sampler} cannot model conditional parameters ({', '.join(conditional)}) and "
                "would sample them at random; use sampler: tpe (or auto, the default, which picks tpe here), "
                "which is conditional-aware",
                source=source, field="sampler",
            )
    if config.sampler_name == "cmaes":
        categorical = [n for n, p in config.parameters.items() if isinstance(p, Choice)]
        numeric = [n for n, p in config.parameters.items() if isinstance(p, Range)]
        if categorical or len(numeric) < 2:
            raise ConfigError(
                "sampler cmaes needs at least 2 numeric ranges and no categorical parameters "
                f"(categorical: {', '.join(categorical) or 'none'}; ranges: {', '.join(numeric) or 'none'}); "
                "use sampler: tpe or gp",
                source=source, field="sampler",
            )


def _check_grid(config: SweepConfig, source: str) -> None:
    upper = 1
    for name, param in config.parameters.items():
        if isinstance(param, Range) and param.grid_values() is None:
            raise ConfigError(
                f"method grid needs discrete values, but this is a continuous {param.distribution} range "
                f"[{param.min:g}, {param.max:g}]; give `values: [...]`, add a `step`, or use method random/bayes",
                source=source, field=f"parameters.{name}",
            )
        upper *= len(space._grid_choices(name, param))
    if upper > MAX_GRID_POINTS * 10:
        raise ConfigError(
            f"the grid has up to {upper:,} points; at most {MAX_GRID_POINTS:,} are allowed: "
            "narrow the values or use method random/bayes",
            source=source, field="parameters",
        )
    size = space.grid_size(config)
    if size > MAX_GRID_POINTS:
        raise ConfigError(
            f"the grid has {size:,} points; at most {MAX_GRID_POINTS:,} are allowed", source=source, field="parameters"
        )
    if config.budget.trials is not None and config.budget.trials != size:
        raise ConfigError(
            f"method grid runs every point of the grid exactly once ({size} points), got budget.trials="
            f"{config.budget.trials}; remove budget.trials or use method random/bayes",
            source=source, field="budget.trials",
        )


def trials_planned(config: SweepConfig) -> int:
    """How many trials the sweep will run (a finite space smaller than the budget runs each point once)."""
    if config.method == "grid":
        return space.grid_size(config)
    trials = config.budget.trials or DEFAULT_TRIALS
    points = space.distinct_points(config)
    return trials if points is None else min(points, trials)


def finite_space_note(config: SweepConfig) -> str | None:
    """The line to print before a random or bayes sweep whose space has no more points than its budget."""
    trials = config.budget.trials or DEFAULT_TRIALS
    if config.method == "grid" or not space.runs_every_point(config, trials):
        return None
    points = space.distinct_points(config)
    budget = f"budget.trials is {trials}" if config.budget.trials else f"budget.trials defaults to {trials}"
    s = "" if points == 1 else "s"
    found = f"only {points}" if points != trials else f"exactly {points}"
    joint = "but" if points != trials else "and"
    return (f"note: parameters have {found} distinct configuration{s} {joint} {budget}; method: grid runs each "
            f"exactly once, and so will this {config.method} sweep: {points} trial{s}, no repeats")


# -- the built-in trainer's catalog ----------------------------------------------------------------
def _check_catalog(config: SweepConfig, source: str) -> None:
    known = catalog.CATALOG
    options = config.trainer.options
    task = TASKS.get(config.trainer.task or "")
    for name, value in options.items():
        field = f"trainer.options.{name}"
        _known(name, known, source, field)
        if name in config.parameters:
            raise ConfigError(
                f"{name} is set both here and in parameters.{name}; keep one", source=source, field=field
            )
        _value_ok(known[name], value, source, field)
        _option_applies(config, name, known[name], source, field)
    for name, param in config.parameters.items():
        field = f"parameters.{name}"
        _known(name, known, source, field)
        spec = known[name]
        _param_matches(spec, param, source, field)
        _requires_hold(config, name, param, spec, source, field)
    model_param = config.parameters.get("model")
    models = _possible_values(model_param) if model_param else [options.get("model", known["model"].default)]
    if task is not None and config.trainer.model is None:  # own data or own model: any architecture
        for model in models:
            if model not in task.models:
                raise ConfigError(
                    f"task {task.name} has no model {model!r}; it has {', '.join(task.models)}",
                    source=source, field="parameters.model" if model_param else "trainer.options.model",
                )
    _cross_checks(config, source)


def _known(name: str, known: dict[str, catalog.HParam], source: str, field: str) -> None:
    if name not in known:
        raise ConfigError(
            f"the built-in trainer has no setting {name!r}{did_you_mean(name, set(known))}; "
            f"settings: {', '.join(sorted(known))}",
            source=source, field=field,
        )


def _value_ok(spec: catalog.HParam, value: Any, source: str, field: str) -> None:
    problem = spec.check(value)
    if problem:
        raise ConfigError(f"{spec.name} {problem}", source=source, field=field)


def _param_matches(spec: catalog.HParam, param: Fixed | Choice | Range, source: str, field: str) -> None:
    if isinstance(param, Fixed):
        _value_ok(spec, param.value, source, f"{field}.value")
    elif isinstance(param, Choice):
        for i, value in enumerate(param.values):
            _value_ok(spec, value, source, f"{field}.values[{i}]")
    else:
        if spec.kind not in ("int", "float"):
            raise ConfigError(
                f"{spec.name} is a {spec.kind} setting and cannot take a {param.distribution} distribution; "
                "give `values: [...]`",
                source=source, field=f"{field}.distribution",
            )
        if spec.kind == "int" and not param.is_int:
            raise ConfigError(
                f"{spec.name} is an integer setting; use distribution int or int_log, got {param.distribution}",
                source=source, field=f"{field}.distribution",
            )
        _value_ok(spec, int(param.min) if param.is_int else param.min, source, f"{field}.min")
        _value_ok(spec, int(param.max) if param.is_int else param.max, source, f"{field}.max")


def _option_applies(config: SweepConfig, name: str, spec: catalog.HParam, source: str, field: str) -> None:
    """A fixed setting that exists only for some values of another must apply to at least one trial.

    (momentum with optimizer adam does nothing; with optimizer {values: [sgd, adam]} it serves the sgd trials.)
    """
    for parent, allowed in spec.requires.items():
        parent_param = config.parameters.get(parent)
        possible = (_possible_values(parent_param) if parent_param is not None
                    else [config.trainer.options.get(parent, catalog.CATALOG[parent].default)])
        if not any(v in allowed for v in possible):
            where = f"parameters.{parent}" if parent_param is not None else f"trainer.options.{parent}"
            raise ConfigError(
                f"{name} applies only when {parent} is {' or '.join(map(str, allowed))}, but {parent} is "
                f"{', '.join(map(str, possible))} here ({where}); remove {name} or change {parent}",
                source=source, field=field,
            )


def _requires_hold(
    config: SweepConfig, name: str, param: Fixed | Choice | Range, spec: catalog.HParam, source: str, field: str
) -> None:
    """A setting that exists only for some values of another (momentum: sgd) must be conditioned on them."""
    for parent, allowed in spec.requires.items():
        parent_param = config.parameters.get(parent)
        if parent_param is not None:
            possible = _possible_values(parent_param)
            limit = param.condition().get(parent)
            if limit is not None:
                possible = [v for v in possible if v in limit]
        else:
            possible = [config.trainer.options.get(parent, catalog.CATALOG[parent].default)]
        extra = [v for v in possible if v not in allowed]
        if extra:
            raise ConfigError(
                f"{name} applies only when {parent} is {' or '.join(map(str, allowed))}, but {parent} can be "
                f"{', '.join(map(str, extra))} here; add `when: {{{parent}: {_yaml_list(allowed, possible)}}}` "
                f"or remove {name}",
                source=source, field=field,
            )


def _yaml_list(allowed: tuple[Any, ...], possible: list[Any]) -> str:
    keep = [str(v) for v in possible if v in allowed] or [str(v) for v in allowed]
    return keep[0] if len(keep) == 1 else "[" + ", ".join(keep) + "]"


def _cross_checks(config: SweepConfig, source: str) -> None:
    """Rules across settings (warmup shorter than training, ...) on every corner of the space."""
    base = {**catalog.defaults(), "epochs": config.trainer.epochs, **config.trainer.options}
    task = TASKS[config.trainer.task] if config.trainer.task else None
    points = space.grid_points(config) if config.method == "grid" else space.corner_points(config)
    for point in points[:4096]:
        trial_config = {**base, **point}
        problems = catalog.cross_check(trial_config)
        if task is not None and task.n_samples and int(trial_config["batch_size"]) > task.train_size(trial_config):
            problems.append(
                f"batch_size ({trial_config['batch_size']}) is larger than the {task.train_size(trial_config)} "
                "training rows of task "
                f"{task.name}; lower it"
            )
        if problems:
            varying = {k: v for k, v in point.items() if not isinstance(config.parameters[k], Fixed)}
            at = f" (for {', '.join(f'{k}={v}' for k, v in varying.items())})" if varying else ""
            raise ConfigError(problems[0] + at, source=source, field="parameters")


# -- a user's training function, model or data -------------------------------------------------------
def _check_function(config: SweepConfig, source: str) -> None:
    """Import ``trainer.function`` now, so a typo fails before any run or Ray session exists."""
    _import_callable(config.trainer.function or "", ("config", "report"), source, "trainer.function")


def _check_user_parts(config: SweepConfig, source: str) -> None:
    """Import ``trainer.model`` / ``trainer.data`` and look into ``trainer.data_file`` before any trial."""
    trainer = config.trainer
    if trainer.model is not None:
        _import_callable(trainer.model, ("config", "input_shape", "n_outputs"), source, "trainer.model")
    if trainer.data is not None:
        _import_callable(trainer.data, ("config",), source, "trainer.data")
    if trainer.data_file is not None:
        kind = _check_data_file(trainer.data_file, trainer.target, source)
        metrics = CLASSIFICATION_METRICS if kind == "classification" else REGRESSION_METRICS
        for index, objective in enumerate(config.objectives):
            if objective.name not in metrics:
                raise ConfigError(
                    f"metric {objective.name!r} is not reported for {trainer.data_file!r}: its target holds "
                    f"{'class labels' if kind == 'classification' else 'floating-point values'}, so the loop "
                    f"runs {kind} and reports {', '.join(metrics)}",
                    source=source, field=_metric_field(config, index),
                )


def _import_callable(spec: str, arguments: tuple[str, ...], source: str, field: str) -> None:
    import inspect
    import sys
    from pathlib import Path

    from trainers.imports import import_callable

    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # trials get the same folder on their PYTHONPATH
    try:
        function = import_callable(spec)
    except ImportError as e:
        raise ConfigError(f"cannot import {spec!r}: {e}; run hpo from the folder that holds the package",
                          source=source, field=field) from None
    except AttributeError as e:
        raise ConfigError(f"{spec!r} does not exist: {e}", source=source, field=field) from None
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing (SyntaxError, ...)
        raise ConfigError(f"importing {spec!r} raised {type(e).__name__}: {e}", source=source,
                          field=field) from None
    if not callable(function):
        raise ConfigError(f"{spec!r} is not a function", source=source, field=field)
    try:
        inspect.signature(function).bind(*(object() for _ in arguments))
    except TypeError:
        raise ConfigError(
            f"{spec} must accept ({', '.join(arguments)}); its signature is {inspect.signature(function)}",
            source=source, field=field,
        ) from None
    except ValueError:
        pass  # builtins without a signature: let the trial tell


def _check_data_file(path: str, target: str | None, source: str, field: str = "trainer.data_file") -> str:
    """The file exists and holds what the loop needs; returns the task it makes (classification or
    regression, as the loop decides: floating-point targets are regression). Reads the header and the
    target column only."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"data file {path!r} does not exist (looked in {Path.cwd()}); give a path relative "
                          "to the folder hpo runs in, or an absolute one", source=source, field=field)
    suffix = file.suffix.lower()
    try:
        if suffix == ".npz":
            import numpy as np

            with np.load(file) as archive:
                names = list(archive.files)
            missing = [key for key in ("X", "y") if key not in names]
            what, fix = "arrays", "save it with numpy.savez(path, X=features, y=targets)"
        else:
            names = _columns(file, suffix)
            missing = [str(target)] if target not in names else []
            what, fix = "columns", "set trainer.target to one of them"
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read data file {path!r}: {e}", source=source, field=field) from None
    if missing:
        hint = did_you_mean(str(missing[0]), set(names))
        raise ConfigError(f"data file {path!r} has no {missing[0]!r}{hint}; its {what}: {', '.join(names)}; {fix}",
                          source=source, field="trainer.target" if suffix != ".npz" else field)
    return "regression" if _target_is_float(file, suffix, str(target)) else "classification"


def _target_is_float(file: Any, suffix: str, target: str) -> bool:
    import numpy as np

    if suffix == ".npz":
        with np.load(file) as archive:
            dtype = archive["y"].dtype
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        dtype = pq.read_table(file, columns=[target]).column(0).to_numpy().dtype
    else:
        import pandas as pd

        dtype = pd.read_csv(file, usecols=[target])[target].to_numpy().dtype
    return bool(np.issubdtype(dtype, np.floating))


def _columns(file: Any, suffix: str) -> list[str]:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(file).names)
    import pandas as pd

    return [str(c) for c in pd.read_csv(file, nrows=0).columns]


def _check_early_stop(config: SweepConfig, source: str) -> None:
    rule = config.early_stop
    if rule.type != "none" and rule.grace_epochs > config.max_epochs:
        raise ConfigError(
            f"grace_epochs ({rule.grace_epochs}) must not exceed the trials' epochs ({config.max_epochs}); "
            "lower it or train longer",
            source=source, field="early_stop.grace_epochs",
        )


# -- metric ----------------------------------------------------------------------------------------
def _metric_field(config: SweepConfig, index: int) -> str:
    return f"metric[{index}].name" if config.multi_objective else "metric.name"


def _check_metric(config: SweepConfig, source: str) -> None:
    if config.trainer.task is not None:
        reported: tuple[str, ...] | list[str] | None = TASKS[config.trainer.task].metrics
        who = f"task {config.trainer.task}"
    elif config.trainer.function is None:  # own data: classification or regression, known once loaded
        reported = tuple(dict.fromkeys(CLASSIFICATION_METRICS + REGRESSION_METRICS))
        who = "the built-in loop"
    else:
        reported = config.trainer.reports
        who = f"trainer.function {config.trainer.function}"
    for index, objective in enumerate(config.objectives):
        name, field = objective.name, _metric_field(config, index)
        if reported is not None and name not in reported:
            raise ConfigError(
                f"metric {name!r} is not reported by {who}{did_you_mean(name, set(reported))}; "
                f"reported: {', '.join(reported)}",
                source=source, field=field,
            )
        if name in ("lr", "epoch_seconds"):
            raise ConfigError(f"{name!r} describes training, it is not a goal; pick a loss or accuracy",
                              source=source, field=field)
        if name in objectives.MACHINE_DEPENDENT and config.budget.max_concurrent != 1:
            raise ConfigError(
                f"{name!r} is measured on a machine the concurrent trials share, so it would rank trials by "
                f"what ran beside them, not by their model; set budget.max_concurrent: 1 (got "
                f"{config.budget.max_concurrent}) or use params, size_mb or flops",
                source=source, field=field,
            )
    if config.multi_objective:
        _check_multi_objective(config, source)


def _check_multi_objective(config: SweepConfig, source: str) -> None:
    """What cannot run with several objectives: one-metric schedulers and single-objective samplers."""
    names = ", ".join(m.name for m in config.objectives)
    if config.early_stop.type != "none":
        raise ConfigError(
            f"early_stop {config.early_stop.type} ranks trials by one metric and this sweep has "
            f"{len(config.objectives)} objectives ({names}): a trial poor on the first may be on the Pareto "
            "front; set early_stop: {type: none} (or keep one objective under metric)",
            source=source, field="early_stop.type",
        )
    if config.sampler_name == "cmaes":
        raise ConfigError(
            f"sampler cmaes optimises one objective and this sweep has {len(config.objectives)} ({names}); "
            "use sampler: auto (the default), tpe, nsga2 or gp",
            source=source, field="sampler",
        )
