"""What the built-in trainer lets a sweep tune: names, types, ranges, defaults and conditions.

Torch-free on purpose: ``hpo validate`` checks a sweep file against this catalog without importing
torch. Every key the built-in loop reads from a trial config is declared here exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["float", "int", "bool", "str", "int_list"]
DEFAULT_TEST_FRACTION = 0.2  # the test share of the built-in tasks without an official test split
# Settings that shape the data split: every trial of a sweep must see the same split, so they are never
# searched (``split_seed`` comes from the sweep's own ``seed``).
SPLIT_SETTINGS = ("test_fraction", "split_seed")


@dataclass(frozen=True)
class HParam:
    """One tunable setting of the built-in trainer.

    Attributes:
        name: key in the trial config.
        kind: value type.
        default: value used when the sweep does not set it.
        low, high: inclusive bounds for numbers (None = unbounded).
        choices: the allowed values for strings.
        requires: the setting only exists when each named parameter takes one of the listed
            values, e.g. ``{"optimizer": ("sgd", "rmsprop")}`` for ``momentum``.
        help: one line for docs and error messages.
    """

    name: str
    kind: Kind
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    requires: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    help: str = ""

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not allowed for this setting, or None when it is."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"expected a number, got {value!r}"
            if not math.isfinite(value):
                return f"expected a finite number, got {value!r}"
            if self.kind == "int" and not float(value).is_integer():
                return f"expected an integer, got {value!r}"
            if self.low is not None and value < self.low:
                return f"must be >= {self.low}, got {value!r}"
            if self.high is not None and value > self.high:
                return f"must be <= {self.high}, got {value!r}"
            return None
        if self.kind == "int_list":
            ok = isinstance(value, list | tuple) and all(isinstance(v, int) for v in value)
            return None if ok else f"expected a list of integers, got {value!r}"
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            return f"expected one of {allowed}, got {value!r}"
        return None if isinstance(value, str) else f"expected a string, got {value!r}"


def _catalog(*params: HParam) -> dict[str, HParam]:
    return {p.name: p for p in params}


OPTIMIZERS = (
    "sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam",
    "rprop", "asgd", "lbfgs", "lamb",
)
SCHEDULERS = (
    "constant", "step", "multistep", "exponential", "cosine", "cosine_restarts", "linear",
    "polynomial", "onecycle", "plateau",
)
LR_SCALINGS = ("none", "linear", "sqrt")
MODELS = ("mlp", "cnn", "gru", "transformer")
INITS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
         "normal", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
# Optimizers whose step re-evaluates the loss through a closure (no GradScaler there).
CLOSURE_OPTIMIZERS = ("lbfgs",)
# torch's Rprop and LBFGS take no weight decay at all.
NO_WEIGHT_DECAY = ("rprop", "lbfgs")
# Schedules whose lr decays towards ``min_lr``.
MIN_LR_SCHEDULERS = ("cosine", "cosine_restarts", "linear", "polynomial", "onecycle", "plateau")


def _opt(*names: str) -> dict[str, tuple[str, ...]]:
    return {"optimizer": names}


def _sched(*names: str) -> dict[str, tuple[str, ...]]:
    return {"scheduler": names}


_ADAM_FAMILY = ("adam", "adamw", "adamax", "nadam", "radam", "lamb")

CATALOG: dict[str, HParam] = _catalog(
    # -- optimizer ---------------------------------------------------------------------------
    HParam("optimizer", "str", "adam", choices=OPTIMIZERS, help="optimizer algorithm"),
    HParam("lr", "float", 1e-3, low=0.0, help="learning rate (before lr_scaling)"),
    HParam("momentum", "float", 0.9, low=0.0, high=1.0, requires=_opt("sgd", "rmsprop"),
           help="momentum factor of SGD / RMSprop"),
    HParam("nesterov", "bool", False, requires=_opt("sgd"),
           help="Nesterov momentum (needs momentum > 0 and dampening 0)"),
    HParam("dampening", "float", 0.0, low=0.0, high=1.0, requires=_opt("sgd"),
           help="SGD dampening of the gradient added to the momentum buffer"),
    HParam("weight_decay", "float", 0.0, low=0.0,
           help="weight decay: L2 term added to the gradient; decoupled for adamw and lamb "
                "(and for adam/nadam/radam with decoupled_weight_decay); must be 0 for rprop, lbfgs"),
    HParam("decoupled_weight_decay", "bool", False, requires=_opt("adam", "nadam", "radam"),
           help="apply weight_decay AdamW-style (shrink weights) instead of as an L2 gradient term"),
    HParam("beta1", "float", 0.9, low=0.0, high=0.9999, requires=_opt(*_ADAM_FAMILY),
           help="decay rate of the first-moment (mean) estimate"),
    HParam("beta2", "float", 0.999, low=0.0, high=0.99999, requires=_opt(*_ADAM_FAMILY),
           help="decay rate of the second-moment (uncentred variance) estimate"),
    HParam("eps", "float", 1e-8, low=0.0, requires=_opt(*_ADAM_FAMILY, "rmsprop"),
           help="term added to the denominator for numerical stability"),
    HParam("amsgrad", "bool", False, requires=_opt("adam", "adamw"),
           help="use the maximum of past second moments (AMSGrad)"),
    HParam("alpha", "float", 0.99, low=0.0, high=1.0, requires=_opt("rmsprop"),
           help="RMSprop smoothing constant of the squared-gradient average"),
    HParam("centered", "bool", False, requires=_opt("rmsprop"),
           help="RMSprop: normalise by the estimated gradient variance instead of the raw second moment"),
    HParam("lr_decay", "float", 0.0, low=0.0, requires=_opt("adagrad"),
           help="Adagrad: lr at step k is lr / (1 + (k - 1) * lr_decay)"),
    HParam("rho", "float", 0.9, low=0.0, high=1.0, requires=_opt("adadelta"),
           help="Adadelta decay rate of the running averages"),
    HParam("eta_minus", "float", 0.5, low=0.01, high=0.99, requires=_opt("rprop"),
           help="Rprop: step-size factor when the gradient sign flips"),
    HParam("eta_plus", "float", 1.2, low=1.01, high=10.0, requires=_opt("rprop"),
           help="Rprop: step-size factor when the gradient sign stays"),
    HParam("rprop_min_step", "float", 1e-6, low=0.0, requires=_opt("rprop"),
           help="Rprop: smallest allowed step size"),
    HParam("rprop_max_step", "float", 50.0, low=0.0, requires=_opt("rprop"),
           help="Rprop: largest allowed step size"),
    HParam("lambd", "float", 1e-4, low=0.0, requires=_opt("asgd"), help="ASGD decay term"),
    HParam("t0", "float", 1e6, low=0.0, requires=_opt("asgd"),
           help="ASGD: step at which parameter averaging starts"),
    HParam("history_size", "int", 100, low=1, requires=_opt("lbfgs"),
           help="LBFGS: number of past updates kept to approximate the Hessian"),
    HParam("max_iter", "int", 20, low=1, requires=_opt("lbfgs"),
           help="LBFGS: iterations (closure evaluations, roughly) per optimizer step"),
    HParam("line_search", "str", "strong_wolfe", choices=("none", "strong_wolfe"), requires=_opt("lbfgs"),
           help="LBFGS line search; 'none' takes fixed lr-sized steps"),
    # -- learning-rate schedule ----------------------------------------------------------------
    HParam("scheduler", "str", "constant", choices=SCHEDULERS,
           help="learning-rate schedule after warmup (see docs/optimizers_and_schedules.md)"),
    HParam("warmup_epochs", "float", 0.0, low=0.0,
           help="linear warmup length in epochs (fractions allowed, stepped per batch); 0 = none"),
    HParam("step_size", "int", 5, low=1, requires=_sched("step"),
           help="step: multiply lr by gamma every step_size epochs"),
    HParam("gamma", "float", 0.1, low=0.0, high=1.0, requires=_sched("step", "multistep"),
           help="step/multistep: factor applied to lr at each decay"),
    HParam("milestones", "int_list", [5, 8], requires=_sched("multistep"),
           help="multistep: epochs (counted after warmup) at which lr is multiplied by gamma"),
    HParam("exp_gamma", "float", 0.9, low=0.0, high=1.0, requires=_sched("exponential"),
           help="exponential: factor applied to lr after every epoch"),
    HParam("min_lr", "float", 0.0, low=0.0, requires=_sched(*MIN_LR_SCHEDULERS),
           help="lowest lr the schedule decays to (absolute, not scaled by lr_scaling)"),
    HParam("restart_epochs", "int", 5, low=1, requires=_sched("cosine_restarts"),
           help="cosine_restarts: length of the first cosine cycle in epochs (T_0)"),
    HParam("restart_mult", "int", 1, low=1, requires=_sched("cosine_restarts"),
           help="cosine_restarts: each cycle is this many times longer than the previous (T_mult)"),
    HParam("power", "float", 1.0, low=0.0, requires=_sched("polynomial"),
           help="polynomial: exponent of the decay (1 = linear)"),
    HParam("pct_start", "float", 0.3, low=0.01, high=0.99, requires=_sched("onecycle"),
           help="onecycle: fraction of training spent raising lr to its peak"),
    HParam("div_factor", "float", 25.0, low=1.0, requires=_sched("onecycle"),
           help="onecycle: the cycle starts at lr / div_factor and peaks at lr"),
    HParam("plateau_patience", "int", 3, low=0, requires=_sched("plateau"),
           help="plateau: epochs without val_loss improvement before lr is reduced"),
    HParam("plateau_factor", "float", 0.1, low=0.0, high=0.99, requires=_sched("plateau"),
           help="plateau: factor applied to lr at each reduction"),
    # -- batches and length --------------------------------------------------------------------
    HParam("batch_size", "int", 64, low=1, help="mini-batch size"),
    HParam("epochs", "int", 10, low=1, help="number of passes over the training set"),
    HParam("lr_scaling", "str", "none", choices=LR_SCALINGS,
           help="scale lr with batch size: linear = lr*batch_size/base_batch_size, sqrt = its square root"),
    HParam("base_batch_size", "int", 64, low=1, requires={"lr_scaling": ("linear", "sqrt")},
           help="batch size at which lr is meant (the reference of lr_scaling)"),
    # -- model ---------------------------------------------------------------------------------
    HParam("model", "str", "mlp", choices=MODELS, help="architecture of the built-in task"),
    HParam("hidden", "int", 128, low=1,
           help="width: hidden units (mlp, gru), channels (cnn) or model width d_model (transformer)"),
    HParam("layers", "int", 2, low=1, high=16,
           help="depth: hidden layers (mlp), conv blocks (cnn), GRU layers (gru) or encoder layers (transformer)"),
    HParam("dropout", "float", 0.0, low=0.0, high=0.95, help="dropout probability"),
    HParam("heads", "int", 2, low=1, high=16, requires={"model": ("transformer",)},
           help="transformer: attention heads (hidden must be divisible by heads)"),
    HParam("batch_norm", "bool", False, requires={"model": ("mlp",)},
           help="mlp: BatchNorm1d after each hidden Linear layer"),
    HParam("conv_batch_norm", "bool", True, requires={"model": ("cnn",)},
           help="cnn: BatchNorm after each convolution"),
    HParam("activation", "str", "relu", choices=ACTIVATIONS, requires={"model": ("mlp", "cnn")},
           help="mlp, cnn: the nonlinearity after each hidden layer / convolution"),
    HParam("init", "str", "default", choices=INITS,
           help="initialisation of weight matrices and kernels (biases keep torch's default)"),
    HParam("init_std", "float", 0.02, low=0.0, requires={"init": ("normal",)},
           help="init normal: standard deviation of the weights"),
    HParam("init_value", "float", 0.0, requires={"init": ("constant",)},
           help="init constant: the value of every weight"),
    # -- loss and regularization ---------------------------------------------------------------
    HParam("l1", "float", 0.0, low=0.0,
           help="L1 penalty l1 * sum|w| on weight matrices added to the loss (with l2 or weight_decay: elastic net)"),
    HParam("l2", "float", 0.0, low=0.0,
           help="L2 penalty l2 * sum w^2 on weight matrices added to the loss, whatever the optimizer"),
    HParam("label_smoothing", "float", 0.0, low=0.0, high=0.99,
           help="classification: cross-entropy label smoothing of the training loss (val_loss stays plain)"),
    # -- training step ---------------------------------------------------------------------------
    HParam("accumulate_steps", "int", 1, low=1, high=1024,
           help="gradient accumulation: mini-batches of batch_size per optimizer step"),
    HParam("clip_norm", "float", 0.0, low=0.0, help="clip the global gradient L2 norm to this value; 0 = off"),
    HParam("clip_value", "float", 0.0, low=0.0, help="clip each gradient element to [-v, v]; 0 = off"),
    HParam("precision", "str", "fp32", choices=PRECISIONS,
           help="fp32; bf16 autocast (CPU or CUDA); fp16 autocast, with a GradScaler on CUDA"),
    HParam("patience", "int", 0, low=0,
           help="early stopping inside the trial: stop after this many epochs without improving the "
                "sweep metric by more than min_delta; 0 = off"),
    HParam("min_delta", "float", 0.0, low=0.0, help="smallest change of the sweep metric that counts as improving"),
    # -- data ----------------------------------------------------------------------------------
    HParam("train_fraction", "float", 1.0, low=0.01, high=1.0,
           help="use only this fraction of the training split (learning-curve studies)"),
    HParam("val_fraction", "float", 0.2, low=0.05, high=0.9,
           help="hold-out validation fraction of the rows left after the test split, for tasks without an "
                "official split (all but mnist1d)"),
    HParam("test_fraction", "float", DEFAULT_TEST_FRACTION, low=0.05, high=0.5,
           help="share of all rows held out as the test split (stratified, fixed by the sweep's seed; never "
                "searched): digits, breast_cancer, diabetes default to 0.2; a data_file has no test split "
                "unless it is set (or trainer.test_file is); mnist1d has its official one"),
    HParam("split_seed", "int", 0, low=0,
           help="fixes the train/validation/test split; set from the sweep's `seed`, the same for every trial"),
    HParam("folds", "int", 0, low=0, high=20,
           help="k-fold cross-validation over all labelled data (k >= 2, folds trained in lockstep); 0 = hold-out"),
    HParam("input_noise", "float", 0.0, low=0.0,
           help="augmentation: std of gaussian noise added to training inputs; 0 = off"),
    HParam("shift", "int", 0, low=0,
           help="augmentation: random circular shift of training sequences along their last axis by up "
                "to this many steps; 0 = off"),
    HParam("seed", "int", 0, low=0, help="the trial's seed: initialisation, batch order and augmentation only"),
    # -- what the loop logs ----------------------------------------------------------------------
    HParam("training_signals", "bool", True,
           help="log signals/* metrics every epoch (gradient and weight norms, update ratios, dead and "
                "saturated units) and a per-layer training_signals.json; false = off"),
)


def defaults() -> dict[str, Any]:
    """The trial config the built-in trainer uses when a sweep sets nothing."""
    return {name: p.default for name, p in CATALOG.items() if not p.requires}


def resolve(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill every catalog setting ``config`` lacks with its default, conditional ones included.

    Builders read the result so that a trial config holding only the active settings it sampled
    still finds e.g. ``momentum`` when the optimizer is sgd. Lists are copied, never shared.

    Args:
        config: a (partial) trial config.

    Returns:
        A new dict: catalog defaults overlaid by ``config``; keys unknown to the catalog are kept.
    """
    full = {name: _copy(p.default) for name, p in CATALOG.items()}
    full.update({key: _copy(value) for key, value in config.items()})
    return full


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def is_active(name: str, config: Mapping[str, Any]) -> bool:
    """Whether setting ``name`` is used by the config ``config`` (its ``requires`` hold).

    Raises:
        KeyError: ``name`` is not in the catalog.
    """
    full = resolve(config)
    return all(full.get(key) in allowed for key, allowed in CATALOG[name].requires.items())


def scaled_lr(config: Mapping[str, Any]) -> float:
    """The lr after batch-size scaling: ``lr * r`` (linear) or ``lr * sqrt(r)`` (sqrt), ``r = batch_size /
    base_batch_size``; plain ``lr`` for ``lr_scaling: none``.

    Raises:
        ValueError: unknown ``lr_scaling``.
    """
    full = resolve(config)
    lr, scaling = float(full["lr"]), full["lr_scaling"]
    if scaling == "none":
        return lr
    ratio = full["batch_size"] / full["base_batch_size"]
    if scaling == "linear":
        return lr * ratio
    if scaling == "sqrt":
        return lr * ratio**0.5
    raise ValueError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {scaling!r}")


def cross_check(config: Mapping[str, Any]) -> list[str]:
    """Problems of one concrete, full trial config; empty when the built-in trainer can run it.

    Checks each known setting's type and bounds, settings given a non-default value for an
    optimizer or schedule that does not use them, and rules that tie settings together (warmup
    shorter than training, milestones inside training, nesterov needs momentum, ...). Keys unknown
    to the catalog are left alone: custom trainers read their own.

    Args:
        config: the trial config (missing settings take their catalog defaults).

    Returns:
        One sentence per problem, naming the fields, their values and the fix.
    """
    problems = field_problems(config)
    if problems:  # the cross-field rules below assume well-typed values
        return problems
    full = resolve(config)
    return optimizer_problems(full) + schedule_problems(full) + training_problems(full)


def group_problems(full: Mapping[str, Any], group: str, keys: tuple[str, ...]) -> list[str]:
    """Type/bound problems of the settings a builder reads: ``keys`` plus every active setting that
    exists only for some value of ``group`` (``"optimizer"`` or ``"scheduler"``).

    Args:
        full: a resolved trial config.
        group: the setting whose choice decides which others exist.
        keys: settings the builder always reads.

    Returns:
        One ``"name: why"`` sentence per problem.
    """
    problems = []
    for name, param in CATALOG.items():
        if (name in keys or group in param.requires) and is_active(name, full):
            why = param.check(full[name])
            if why is not None:
                problems.append(f"{name}: {why}")
    return problems


def field_problems(config: Mapping[str, Any]) -> list[str]:
    """Type/bound problems of each known setting in ``config``, and settings given a non-default value
    although the config does not use them (momentum for adam). Default values of unused settings
    pass, so a config from ``resolve`` checks clean.

    Returns:
        One sentence per problem.
    """
    problems = []
    for name, value in config.items():
        param = CATALOG.get(name)
        if param is None:
            continue
        why = param.check(value)
        if why is not None:
            problems.append(f"{name}: {why} ({param.help})")
        elif value != param.default and not is_active(name, config):
            problems.append(_inactive(param, config))
    return problems


def _inactive(param: HParam, config: Mapping[str, Any]) -> str:
    full = resolve(config)
    rules = [f"{key} is {' or '.join(map(str, allowed))}" for key, allowed in param.requires.items()]
    given = ", ".join(f"{key}={full.get(key)!r}" for key in param.requires)
    return f"{param.name} is only used when {' and '.join(rules)}, got {given}; remove {param.name}"


def optimizer_problems(config: Mapping[str, Any]) -> list[str]:
    """Cross-field rules of the optimizer settings of a resolved config (see ``resolve``).

    Returns:
        One sentence per problem.
    """
    opt, problems = config["optimizer"], []
    if opt not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {opt!r}")
    if opt == "sgd" and config["nesterov"] and (config["momentum"] <= 0 or config["dampening"] != 0):
        problems.append(
            f"nesterov needs momentum > 0 and dampening 0, got momentum={config['momentum']}, "
            f"dampening={config['dampening']}; set nesterov false or change them"
        )
    if opt in NO_WEIGHT_DECAY and config["weight_decay"] != 0:
        problems.append(f"weight_decay must be 0 for optimizer {opt} (it has none), got {config['weight_decay']}")
    if opt == "rprop" and config["rprop_min_step"] > config["rprop_max_step"]:
        problems.append(
            f"rprop_min_step ({config['rprop_min_step']}) must not exceed rprop_max_step ({config['rprop_max_step']})"
        )
    return problems


def schedule_problems(config: Mapping[str, Any]) -> list[str]:
    """Cross-field rules of the lr schedule of a resolved config (see ``resolve``).

    The main schedule starts when warmup ends, so its epoch-valued settings must fit in the
    ``epochs - warmup_epochs`` left after warmup.

    Returns:
        One sentence per problem.
    """
    sched, epochs, warmup = config["scheduler"], config["epochs"], config["warmup_epochs"]
    if sched not in SCHEDULERS:
        return [f"scheduler must be one of {', '.join(SCHEDULERS)}, got {sched!r}"]
    if warmup >= epochs:
        return [f"warmup_epochs ({warmup}) must be smaller than epochs ({epochs})"]
    span, problems = epochs - warmup, []
    after = f"epochs - warmup_epochs ({_num(span)})"
    if sched == "step" and config["step_size"] >= span:
        problems.append(f"step_size ({config['step_size']}) must be smaller than {after}, otherwise lr never "
                        "decays; lower step_size or use scheduler constant")
    if sched == "multistep":
        problems.extend(_milestone_problems(config["milestones"], span, after))
    if sched == "cosine_restarts" and config["restart_epochs"] >= span:
        problems.append(f"restart_epochs ({config['restart_epochs']}) must be smaller than {after}, otherwise "
                        "no restart happens; lower restart_epochs or use scheduler cosine")
    if sched in MIN_LR_SCHEDULERS and config["min_lr"] > scaled_lr(config):
        problems.append(f"min_lr ({config['min_lr']}) must not exceed the (scaled) lr ({scaled_lr(config):g})")
    return problems


def training_problems(config: Mapping[str, Any]) -> list[str]:
    """Cross-field rules of the model, precision and validation settings of a resolved config.

    Returns:
        One sentence per problem.
    """
    problems = []
    if config["model"] == "transformer" and config["hidden"] % config["heads"]:
        problems.append(f"hidden ({config['hidden']}) must be divisible by heads ({config['heads']}) for model "
                        "transformer; pick hidden as a multiple of heads")
    if config["precision"] == "fp16" and config["optimizer"] in CLOSURE_OPTIMIZERS:
        problems.append(f"precision fp16 needs a GradScaler, which cannot step optimizer {config['optimizer']}; "
                        "use precision bf16 or fp32")
    if config["folds"] == 1:
        problems.append("folds must be 0 (hold-out with val_fraction) or at least 2, got 1")
    return problems


def _milestone_problems(milestones: list[int], span: float, after: str) -> list[str]:
    if not milestones:
        return ["milestones must list at least one epoch for scheduler multistep, got []"]
    problems = []
    if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
        problems.append(f"milestones must be strictly increasing, got {milestones}")
    outside = [m for m in milestones if not 0 < m < span]
    if outside:
        problems.append(f"milestones must lie between 0 and {after} exclusive, got {outside} in {milestones}")
    return problems


def _num(value: float) -> str:
    return f"{value:g}"
