"""Make and measure the compressed variants of one trained model: the compression stage's PyTorch half.

``compress`` takes the winner (model, config, data, metric) and a ``CompressSettings``, makes each
requested variant, saves it under ``out_dir`` and measures it the same way as the fp32 baseline:
validation metrics, parameters, file size, latency at batch 1 and at a large batch with fixed threads.
It knows nothing of MLflow or Ray; a callback hands each finished variant to whoever records it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.compression import onnx_export, prune, quantize, retrain
from trainers.compression.artifact import Transform, save_variant
from trainers.compression.measure import (
    Latency,
    count_parameters,
    evaluate,
    file_size,
    fixed_threads,
    time_interleaved,
    torch_call,
    variant_metrics,
)
from trainers.compression.settings import BASELINE, CompressSettings, check_applicable
from trainers.compression.students import StudentSearch, distill_student
from trainers.data import TaskData
from trainers.models import build_model
from trainers.tasks import load_task

log = logging.getLogger(__name__)


@dataclass
class Winner:
    """The trained model to compress, with what it was trained on and judged by."""

    model: nn.Module
    config: dict[str, Any]
    data: TaskData
    metric: str
    goal: str

    @classmethod
    def from_checkpoint(cls, path: str | Path, task: str, metric: str, goal: str) -> Winner:
        """The built-in task's model from a ``model.pt`` checkpoint (``{"model_state", "config", ...}``).

        The metric falls back to ``val_accuracy`` (classification) or ``val_loss`` (regression) when the
        sweep's is not a validation metric the model can be scored on (``train_loss``, say).
        """
        checkpoint = torch.load(str(path), weights_only=True)
        config = dict(checkpoint["config"])
        data = load_task(task, config)
        model = build_model(str(config["model"]), data.input_shape, data.n_outputs, config)
        model.load_state_dict(checkpoint["model_state"])
        scored = evaluate(model, data)
        if metric not in scored:
            metric, goal = ("val_accuracy", "maximize") if data.kind == "classification" else ("val_loss", "minimize")
        return cls(model.eval(), config, data, metric, goal)


@dataclass
class Variant:
    """One measured variant. ``latency`` maps ``"batch_1"`` and ``"batch_<large>"`` to ``Latency``; it is
    filled once every variant exists, timing all of them in interleaved rounds."""

    name: str
    method: str
    runtime: str  # torch | onnxruntime
    settings: dict[str, Any]
    metrics: dict[str, float]
    metric: float
    params: int
    nonzero_params: int
    size_bytes: int
    latency: dict[str, Latency] = field(default_factory=dict)
    threads: int = 1
    files: list[Path] = field(default_factory=list)
    onnx_max_abs_diff: float | None = None
    note: str = ""
    trials: list[dict[str, Any]] = field(default_factory=list)  # distill: the students of its sweep
    # in memory only, for the ONNX step: the module, its config and how its state dict was made
    model: nn.Module | None = field(default=None, repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    transform: Transform = "none"
    calls: dict[str, Callable[[], Any]] = field(default_factory=dict, repr=False)  # what latency times

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "runtime": self.runtime, "settings": self.settings,
                "metrics": self.metrics, "metric": self.metric, "params": self.params,
                "nonzero_params": self.nonzero_params, "size_bytes": self.size_bytes,
                "latency": {k: v.to_dict() for k, v in self.latency.items()}, "threads": self.threads,
                "files": [p.name for p in self.files], "onnx_max_abs_diff": self.onnx_max_abs_diff, "note": self.note,
                **({"distill_trials": self.trials} if self.trials else {})}


OnVariant = Callable[[Variant], None]


def compress(winner: Winner, settings: CompressSettings, out_dir: Path,
             on_variant: OnVariant | None = None, search: StudentSearch | None = None) -> list[Variant]:
    """Make, save and measure the fp32 baseline and every variant ``settings.methods`` asks for.

    Args:
        winner: the model to compress.
        settings: validated settings (``CompressSettings.validated()``); methods that do not apply to the
            winner's architecture (static int8 on an MLP) are left out.
        out_dir: where the variant files go (one subfolder per variant).
        on_variant: called with each variant, in order, once all are measured.
        search: proposes the distillation sweep's settings when ``settings.distill_trials`` > 0
            (``hpo.distill_search.DistillSearch``).

    Returns:
        The variants in the order made; the first is the fp32 baseline.
    """
    done: list[Variant] = []
    maker = _Maker(winner, settings, out_dir, search)
    methods = check_applicable(settings.methods, str(winner.config["model"]), explicit=False)

    def keep(variant: Variant) -> None:
        done.append(variant)
        log.info("compress: %s %s=%.4f", variant.name, winner.metric, variant.metric)

    with fixed_threads(settings.threads):
        maker.baseline = maker.torch_variant(BASELINE, BASELINE, winner.model, "none", winner.config, {})
        keep(maker.baseline)
        for method in methods:
            if method in ("onnx", "onnx_int8"):
                continue  # last: they export fp32 and the smallest acceptable of the others
            for variant in maker.make(method):
                keep(variant)
        if "onnx" in methods:
            for variant in maker.onnx(done, int8="onnx_int8" in methods):
                keep(variant)
        elif "onnx_int8" in methods:
            for variant in maker.onnx_int8_only():
                keep(variant)
        for key, example in maker.examples.items():
            timings = time_interleaved([v.calls[key] for v in done], len(example), repeats=settings.repeats,
                                       warmup=settings.warmup)
            for variant, timing in zip(done, timings, strict=True):
                variant.latency[key] = timing
    for variant in done:
        if on_variant is not None:
            on_variant(variant)
    return done


class _Maker:
    """Builds each kind of variant from the winner and measures it with one protocol."""

    def __init__(self, winner: Winner, settings: CompressSettings, out_dir: Path,
                 search: StudentSearch | None) -> None:
        self.w, self.s, self.out, self.search = winner, settings, out_dir, search
        x = winner.data.x_val
        reps = -(-settings.large_batch // len(x))
        self.examples = {"batch_1": x[:1], f"batch_{settings.large_batch}": x.repeat(reps, *[1] * (x.dim() - 1))[
            : settings.large_batch]}
        self.params = count_parameters(winner.model)
        self.baseline: Variant  # the fp32 row, made first


    def make(self, method: str) -> list[Variant]:
        w, s = self.w, self.s
        if method == "dynamic_int8":
            model = quantize.dynamic_int8(w.model)
            note = "int8 weights; parameters counted as in fp32"
            return [self.torch_variant(method, method, model, "dynamic_int8", w.config, {}, note=note)]
        if method == "static_int8":
            model = quantize.static_int8(w.model, w.data.x_train[: s.calibration_samples])
            settings = {"calibration_samples": min(s.calibration_samples, len(w.data.x_train)),
                        "backend": quantize.BACKEND}
            return [self.torch_variant(method, method, model, "static_int8", w.config, settings)]
        if method == "prune_global":
            return [self._global(sparsity) for sparsity in s.sparsities]
        if method == "prune_structured":
            small, config = prune.structured(w.model, w.config, w.data.input_shape, w.data.n_outputs,
                                             s.structured_sparsity)
            retrain.finetune(small, config, w.data, epochs=s.finetune_epochs, metric=w.metric, goal=w.goal)
            settings = {"sparsity": s.structured_sparsity, "hidden": config["hidden"],
                        "finetune_epochs": s.finetune_epochs}
            name = f"prune_structured_{s.structured_sparsity:g}"
            return [self.torch_variant(name, method, small, "none", config, settings)]
        if method == "distill":
            return [self._distill()]
        raise ValueError(f"unknown method {method!r}")

    def _global(self, sparsity: float) -> Variant:
        w, s = self.w, self.s
        model = prune.global_magnitude(w.model, sparsity)
        retrain.finetune(model, w.config, w.data, epochs=s.finetune_epochs, metric=w.metric, goal=w.goal)
        prune.make_permanent(model)
        settings = {"sparsity": sparsity, "finetune_epochs": s.finetune_epochs,
                    "measured_sparsity": round(prune.sparsity_of(model), 4)}
        note = "dense tensors: zeros do not shrink the file or the latency"
        return self.torch_variant(f"prune_global_{sparsity:g}", "prune_global", model, "none", w.config, settings,
                                  note=note)

    def _distill(self) -> Variant:
        w = self.w
        done = distill_student(w.model, w.config, w.data, w.metric, w.goal, self.s, self.search)
        variant = self.torch_variant("distill", "distill", done.student, "none", done.config, done.settings)
        variant.trials = [t.to_dict() for t in done.trials]
        return variant

    def torch_variant(self, name: str, method: str, model: nn.Module, transform: Transform, config: dict[str, Any],
                      settings: dict[str, Any], note: str = "") -> Variant:
        folder = self.out / name
        folder.mkdir(parents=True, exist_ok=True)
        path = save_variant(folder / "model.pt", model, method=method, transform=transform, config=config,
                            input_shape=self.w.data.input_shape, n_outputs=self.w.data.n_outputs)
        metrics = variant_metrics(lambda x: _infer(model, x), self.w.data)
        total, nonzero = self.params if transform != "none" else count_parameters(model)
        calls = {k: torch_call(model, x) for k, x in self.examples.items()}
        return Variant(name, method, "torch", settings, metrics, metrics[self.w.metric], total, nonzero,
                       file_size(path), {}, self.s.threads, [path], note=note, model=model, config=config,
                       transform=transform, calls=calls)

    def onnx(self, done: list[Variant], int8: bool) -> list[Variant]:
        """fp32 in ONNX Runtime, its int8 ONNX when ``int8``, and the smallest variant within ``max_drop`` of
        fp32's metric (an int8 one through the int8 ONNX, which torch's quantized modules cannot export)."""
        baseline = done[0]
        sign = 1.0 if self.w.goal == "maximize" else -1.0
        acceptable = [v for v in done[1:] if sign * (baseline.metric - v.metric) <= self.s.max_drop]
        fp32 = self._onnx_of(baseline)
        out = [fp32]
        if int8:
            out.append(self._onnx_int8(fp32.files[0], baseline))
        if acceptable:
            smallest = min(acceptable, key=lambda v: v.size_bytes)
            if smallest.transform == "none":
                out.append(self._onnx_of(smallest))
            elif not int8:
                out.append(self._onnx_int8(fp32.files[0], smallest))
        return out

    def onnx_int8_only(self) -> list[Variant]:
        """The int8 ONNX row alone (``onnx`` not asked for): the fp32 export it starts from is no row."""
        assert self.baseline.model is not None
        folder = self.out / "onnx_fp32_source"
        folder.mkdir(parents=True, exist_ok=True)
        fp32_file = onnx_export.export(self.baseline.model, self.examples["batch_1"], folder / "model.onnx")
        return [self._onnx_int8(fp32_file, self.baseline)]

    def _onnx_of(self, source: Variant) -> Variant:
        """``source`` (an fp32 module) exported and run in ONNX Runtime."""
        assert source.model is not None  # every torch variant keeps its module
        folder = self.out / f"onnx_{source.name}"
        folder.mkdir(parents=True, exist_ok=True)
        path = onnx_export.export(source.model, self.examples["batch_1"], folder / "model.onnx")
        return self._onnx_variant(f"onnx_{source.name}", "onnx", path, source, {"source": source.name},
                                  "exported from PyTorch (dynamo exporter); max_abs_diff against the same model")

    def _onnx_int8(self, fp32_file: Path, source: Variant) -> Variant:
        """ONNX Runtime's int8 of the fp32 export: static and calibrated for a CNN, dynamic otherwise;
        ``max_abs_diff`` against the fp32 PyTorch winner (the quantization error)."""
        w, s = self.w, self.s
        folder = self.out / "onnx_int8"
        folder.mkdir(parents=True, exist_ok=True)
        static = onnx_export.has_convolutions(w.model)
        calibration = w.data.x_train[: s.calibration_samples] if static else None
        path = onnx_export.quantize_int8(fp32_file, folder / "model.onnx", calibration)
        settings: dict[str, Any] = {"source": source.name, "scheme": "static" if static else "dynamic"}
        if static:
            settings["calibration_samples"] = len(calibration)  # type: ignore[arg-type]
        note = ("onnxruntime.quantization static int8 (per-channel weights, calibrated on training data)" if static
                else "onnxruntime.quantization dynamic int8") + "; max_abs_diff against the fp32 PyTorch winner"
        if any(isinstance(m, nn.GRU) for m in w.model.modules()):  # its registry has LSTM, not GRU
            note += "; ONNX Runtime's quantizer has no int8 GRU: the GRU stays fp32, only Linear layers are int8"
        return self._onnx_variant("onnx_int8", "onnx_int8", path, self.baseline, settings, note)

    def _onnx_variant(self, name: str, method: str, path: Path, reference: Variant, settings: dict[str, Any],
                      note: str) -> Variant:
        assert reference.model is not None
        sess = onnx_export.session(path, self.s.threads)
        diff = onnx_export.max_abs_diff(sess, reference.model, self.w.data.x_val[:256])
        metrics = variant_metrics(lambda x: torch.from_numpy(onnx_export.run(sess, x)), self.w.data)
        calls = {k: onnx_export.call(sess, x) for k, x in self.examples.items()}
        return Variant(name, method, "onnxruntime", settings, metrics, metrics[self.w.metric], reference.params,
                       reference.nonzero_params, file_size(path), {}, self.s.threads, [path],
                       onnx_max_abs_diff=diff, note=note, calls=calls)


@torch.inference_mode()
def _infer(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)
