"""Names of the training signals (``trainers.signals``) as they are stored: torch-free on purpose.

``hpo.diagnosis`` reads these per-epoch metrics from the store without importing torch; the trainer
writes them. One prefix keeps them apart from the learning curves and groups them in the MLflow UI.
"""

from __future__ import annotations

from typing import Literal

PREFIX = "signals/"
Group = Literal["input", "hidden", "output"]
GROUPS: tuple[Group, ...] = ("input", "hidden", "output")  # first weighted layer, the ones between, the last

GRAD_NORM = PREFIX + "grad_norm"  # global L2 norm of the gradients before clipping, mean over the measured steps
GRAD_NORM_MAX = PREFIX + "grad_norm_max"  # its largest value in the epoch
NONFINITE_GRAD_STEPS = PREFIX + "nonfinite_grad_steps"  # measured steps whose gradients held NaN/inf
NONFINITE_WEIGHTS = PREFIX + "nonfinite_weights"  # parameter elements that are NaN/inf at the epoch's end
WEIGHT_NORM = PREFIX + "weight_norm"  # global L2 norm of all parameters at the epoch's end
# counted on the examples watched (the built-in loop: the epoch's evaluation of the validation split) or a probe
DEAD_RELU = PREFIX + "dead_relu"  # fraction of ReLU units that are 0 on every example
SATURATED = PREFIX + "saturated"  # fraction of tanh/sigmoid units in their flat zone on >= 90% of the examples
# measured once, before the first step (logged with epoch 1): what the initialization alone does
INIT_DEAD_RELU = PREFIX + "init_dead_relu"  # on a probe (the built-in loop: 128 training examples)
INIT_SATURATED = PREFIX + "init_saturated"
INIT_GRAD_RATIO = PREFIX + "init_grad_input_to_output"  # first step: input group's gradient norm / output's
ARTIFACT = "training_signals.json"  # per-layer detail at the best epoch, one file per trial


def grad_norm_of(group: Group) -> str:
    """Root-mean-square L2 norm of the group's gradients over the measured steps, before clipping."""
    return f"{PREFIX}grad_norm_{group}"


def update_ratio_of(group: Group) -> str:
    """Median over sampled steps of ``||w_after - w_before|| / ||w_before||`` of the group's parameters."""
    return f"{PREFIX}update_ratio_{group}"


def is_signal(key: str) -> bool:
    """Whether a metric name is one of the training signals."""
    return key.startswith(PREFIX)
