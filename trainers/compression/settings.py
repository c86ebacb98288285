"""What ``hpo compress`` may be asked for: the methods, their settings and the rules on them.

Torch-free on purpose: the CLI checks a request (and says which field is wrong) before it loads
torch, reads a checkpoint or creates a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal, get_args

Method = Literal["dynamic_int8", "static_int8", "onnx_int8", "prune_global", "prune_structured", "distill", "onnx"]
METHODS: tuple[Method, ...] = get_args(Method)
BASELINE = "fp32"  # the winner as trained: the row every variant is compared with

# Which built-in architectures each method can rebuild or transform (eager-mode static int8 needs
# Conv/BatchNorm/ReLU fusion; structured pruning knows how to slice these three layer layouts).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "dynamic_int8": ("mlp", "cnn", "gru", "transformer"),
    "static_int8": ("cnn",),
    "onnx_int8": ("mlp", "cnn", "gru", "transformer"),
    "prune_global": ("mlp", "cnn", "gru", "transformer"),
    "prune_structured": ("mlp", "cnn", "gru"),
    "distill": ("mlp", "cnn", "gru", "transformer"),
    "onnx": ("mlp", "cnn", "gru", "transformer"),
}


class SettingsError(ValueError):
    """A compression setting breaks its rule; ``field`` names it (``methods``, ``sparsities``, ...)."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class CompressSettings:
    """One compression request; ``validated()`` checks every rule and returns it unchanged.

    Attributes:
        methods: which variants to make; the fp32 winner is always measured as the baseline.
        sparsities: fractions of weights removed by global magnitude pruning, each in (0, 1).
        structured_sparsity: fraction of hidden units / channels removed by structured pruning, in (0, 1).
        finetune_epochs: epochs of fine-tuning after pruning, with the winner's own training settings.
        distill_epochs: epochs the student trains; 0 means as many as the winner trained.
        distill_trials: students trained by the distillation's own small sweep over temperature and
            alpha (``hpo.distill_search``); the best on the validation metric becomes the ``distill``
            variant. 0: one student with ``temperature`` and ``alpha`` as given.
        student_width: the student's ``hidden`` as a fraction of the winner's, in (0, 1].
        student_layers: the student's ``layers``; 0 means one fewer than the winner (at least 1).
        temperature: distillation temperature (> 0); soft targets are softmax(logits / T).
        alpha: weight of the distillation loss; 1 - alpha weighs the loss on the true labels; in [0, 1].
        max_drop: the largest metric drop (in the metric's own units) a variant may show and still be
            "acceptable" for the ONNX export of the smallest acceptable variant; >= 0.
        threads: torch / ONNX Runtime intra-op threads while measuring (recorded with every figure); >= 1.
        large_batch: the batch size of the throughput measurement; >= 2.
        repeats: timed repeats per latency figure (warm-up runs excluded); >= 3.
        warmup: untimed runs before timing; >= 1.
        calibration_samples: training examples that calibrate static int8; >= 1.
    """

    methods: tuple[str, ...] = METHODS
    sparsities: tuple[float, ...] = (0.5, 0.8, 0.9)
    structured_sparsity: float = 0.5
    finetune_epochs: int = 3
    distill_epochs: int = 0
    distill_trials: int = 0
    student_width: float = 0.5
    student_layers: int = 0
    temperature: float = 4.0
    alpha: float = 0.7
    max_drop: float = 0.01
    threads: int = 1
    large_batch: int = 256
    repeats: int = 30
    warmup: int = 5
    calibration_samples: int = 1024

    def validated(self) -> CompressSettings:
        """This request, once every rule holds.

        Raises:
            SettingsError: the first setting that breaks its rule, named by field.
        """
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise SettingsError("methods", f"unknown method {unknown[0]!r}; methods: {', '.join(METHODS)}")
        if not self.methods:
            raise SettingsError("methods", f"give at least one of {', '.join(METHODS)}")
        for i, s in enumerate(self.sparsities):
            if not (isinstance(s, int | float) and math.isfinite(s) and 0 < s < 1):
                raise SettingsError(f"sparsities[{i}]", f"a sparsity must lie strictly between 0 and 1, got {s!r}")
        _open_unit("structured_sparsity", self.structured_sparsity)
        if not 0 < self.student_width <= 1:
            raise SettingsError("student_width", f"must be in (0, 1], got {self.student_width!r}")
        if not 0 <= self.alpha <= 1:
            raise SettingsError("alpha", f"must be in [0, 1], got {self.alpha!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise SettingsError("temperature", f"must be > 0, got {self.temperature!r}")
        if not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise SettingsError("max_drop", f"must be >= 0, got {self.max_drop!r}")
        minimum = {"finetune_epochs": 0, "distill_epochs": 0, "distill_trials": 0, "student_layers": 0, "threads": 1,
                   "large_batch": 2,
                   "repeats": 3, "warmup": 1, "calibration_samples": 1}
        for f in fields(self):
            if f.name in minimum:
                value = getattr(self, f.name)
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum[f.name]:
                    raise SettingsError(f.name, f"must be a whole number >= {minimum[f.name]}, got {value!r}")
        return self


def _open_unit(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value < 1):
        raise SettingsError(name, f"a sparsity must lie strictly between 0 and 1, got {value!r}")


def check_applicable(methods: tuple[str, ...], model: str, explicit: bool) -> tuple[str, ...]:
    """The methods that apply to the winner's ``model`` architecture.

    Args:
        methods: requested methods (already validated names).
        model: the winner's ``model`` setting (mlp, cnn, gru, transformer).
        explicit: the user named the methods; one that does not apply is then an error, not skipped.

    Raises:
        SettingsError: ``explicit`` and a method does not apply to ``model``.
    """
    if explicit:
        for m in methods:
            if model not in APPLIES_TO[m]:
                raise SettingsError("methods", f"method {m} applies to models {', '.join(APPLIES_TO[m])}; "
                                    f"the winner is a {model}. Leave {m} out.")
    return tuple(m for m in methods if model in APPLIES_TO[m])
