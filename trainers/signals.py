"""Signals from inside training: gradient and weight norms, update ratios, dead and saturated units.

A handful of per-epoch summary metrics (names in :mod:`trainers.signal_names`) for ``hpo.diagnosis``:
the global gradient norm before clipping, the update-to-weight ratio of three layer groups (the first
weighted layer, the ones between, the last), the fraction of dead ReLU and saturated tanh/sigmoid units
on a small probe batch, the weight norm and non-finite counts. Per-layer detail stays out of the metrics
(``layer_report``, an artifact per trial), so the store grows by a constant, not by the layer count.

Cheap by construction: one fused norm on 16 evenly spaced steps per epoch (no host sync), a negated copy of
the weights on 4 sampled steps per epoch, one no-grad forward of the probe per epoch (its counts leave torch
in one copy). Your own loop::

    signals = TrainingSignals(model, optimizer)             # once: hooks the optimizer's step
    ...                                                     # your loop, unchanged
    report({**metrics, **signals.epoch_metrics(probe=x)})   # once per epoch (x: a batch of inputs)

Without a ``gradients()`` call before your clipping, the gradient norm is measured at the optimizer's
step, after it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers import signal_names as names

_RELUS = (nn.ReLU, nn.ReLU6)
_SQUASHES = (nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid)
_SATURATED_SHARE = 0.9  # a unit is saturated when this share of its outputs sit in the flat zone
# where the slope is below 10% of its largest: tanh |y| > 0.949, sigmoid y < 0.026 or > 0.974
_FLAT_TANH, _FLAT_SIGMOID = math.sqrt(0.9), 0.5 * math.sqrt(0.6)
_UPDATE_SAMPLES = 4  # steps per epoch whose update ratio is measured
_GRAD_SAMPLES = 16  # steps per epoch whose gradients are measured (all of a shorter epoch)


class TrainingSignals:
    """Per-epoch statistics of one model and its optimizer.

    Args:
        model: the model (the bare module, not a DDP wrapper around it).
        optimizer: its optimizer; its step is hooked to measure updates (and gradients, when
            :meth:`gradients` was not called for the step).
        steps_per_epoch: optimizer steps per epoch, to spread the update samples (else learnt after the
            first epoch, which samples steps 1, 2, 4, 8, ...).
        probe: inputs to measure dead and saturated units on at once, before training (the
            ``init_*`` signals, logged with the first epoch).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 steps_per_epoch: int | None = None, probe: torch.Tensor | None = None) -> None:
        self.model = model
        self.layers = _layers(model)
        self.params = [p for _, params in self.layers for p in params]
        self.group_of = _groups(len(self.layers))
        # (parameters x layers) and (layers x groups) 0/1 matrices: per-step sums become one matmul at epoch end
        owner = [i for i, (_, ps) in enumerate(self.layers) for _ in ps]
        self.param_layer = np.zeros((len(self.params), len(self.layers)))
        self.param_layer[range(len(self.params)), owner] = 1.0
        self.groups = [g for g in names.GROUPS if g in self.group_of]
        self.layer_group = np.array([[float(g == group) for group in self.groups] for g in self.group_of]).reshape(
            len(self.layers), len(self.groups))
        self.probe = _Probe(model)
        self.steps_per_epoch = steps_per_epoch
        self.handles = [] if optimizer is None else [optimizer.register_step_pre_hook(self._before_step),
                                                      optimizer.register_step_post_hook(self._after_step)]
        self.last_report: dict[str, Any] = {}
        self.initial: dict[str, float] = {}  # reported once, with the first epoch
        if probe is not None and len(probe):
            units = self.probe(probe)
            self.initial.update(_unit_shares(units, names.INIT_DEAD_RELU, names.INIT_SATURATED))
        self.first_epoch = True
        self._reset()

    def continued(self) -> None:
        """The trial continues from a saved epoch (``trainers.resumable``): the values at initialisation went
        out with its first epoch, before the crash; measured now they would describe the restored weights."""
        self.initial = {}
        self.first_epoch = False

    def _reset(self) -> None:
        self.steps, self.measured = 0, False
        self.step_norms: list[tuple[torch.Tensor, ...]] = []  # per measured step: each parameter's gradient norm
        self.snapshot: list[torch.Tensor] | None = None  # minus the weights before a sampled step
        self.before: list[torch.Tensor] = []  # their norms
        self.update_samples: list[tuple[torch.Tensor, ...]] = []  # per sampled step: update norms, weight norms
        per = self.steps_per_epoch
        self.grad_stride = -(-per // _GRAD_SAMPLES) if per else 1
        if per:
            stride = max(1, per // _UPDATE_SAMPLES)
            self.sampled = frozenset(range(0, stride * _UPDATE_SAMPLES, stride))
        else:  # steps 0, 1, 3, 7, ... until the epoch's length is known
            self.sampled = frozenset(2 ** i - 1 for i in range(7))

    def close(self) -> None:
        """Remove the optimizer hooks."""
        for handle in self.handles:
            handle.remove()

    def gradients(self) -> None:
        """Measure the gradients now: call it after backward (and ``scaler.unscale_``), before clipping.

        Once the epoch's length is known, 16 evenly spaced steps per epoch are measured (every step of a
        shorter epoch); only one fused norm per measured step (no host sync, no graph: gradients do not
        require grad); the sums, maxima and NaN checks run once, at epoch end.
        """
        self.measured = True
        if self.steps % self.grad_stride:
            return
        grads = [p.grad for p in self.params if p.grad is not None and not p.grad.is_sparse]
        if len(grads) == len(self.params) and grads:
            self.step_norms.append(torch._foreach_norm(grads))  # type: ignore[arg-type]
        elif grads:  # some parameters got no gradient this step: they count as 0
            self.step_norms.append(tuple(torch.linalg.vector_norm(p.grad) if p.grad is not None and not p.grad.is_sparse
                                         else torch.zeros((), device=p.device) for p in self.params))

    # the step hooks run every step: the unsampled path is a set lookup; a sampled step costs four foreach ops
    # (a negated copy and its norms before, the new weights added to it in place and its norms after)
    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self.measured:
            self.gradients()
        self.measured = False
        if self.steps in self.sampled and self.params:
            with torch.no_grad():
                self.snapshot = torch._foreach_neg(self.params)
                self.before = torch._foreach_norm(self.snapshot)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.snapshot is not None:
            with torch.no_grad():
                torch._foreach_add_(self.snapshot, self.params)  # w_after - w_before
                self.update_samples.append((*torch._foreach_norm(self.snapshot), *self.before))
            self.snapshot = None
        self.steps += 1

    @torch.no_grad()
    def epoch_metrics(self, probe: torch.Tensor | None = None) -> dict[str, float]:
        """The epoch's signals (then start a new epoch); ``probe``: inputs for the dead/saturated units.

        Returns:
            ``signals/...`` metrics; those that were not measured (no step, no ReLU, no probe) are absent.
        """
        out: dict[str, float] = dict(self.initial)
        self.initial = {}
        # small tensors leave torch once, here: numpy's per-call cost is a fraction of torch's on tiny arrays
        with np.errstate(invalid="ignore", over="ignore"):  # inf weights: counted below
            weight_sq = _numpy(torch._foreach_norm(self.params)) ** 2 @ self.param_layer  # type: ignore[arg-type]
        total = math.sqrt(float(weight_sq.sum()))
        bad = 0 if math.isfinite(total) else sum(int((~torch.isfinite(p)).sum()) for p in self.params)
        out[names.WEIGHT_NORM], out[names.NONFINITE_WEIGHTS] = total, float(bad)
        layer_grads = self._gradient_metrics(out)
        ratios = self._update_ratios(out)
        units = self.probe(probe) if probe is not None and len(probe) else []
        out.update(_unit_shares(units, names.DEAD_RELU, names.SATURATED))
        self.last_report = self._layer_report(weight_sq, layer_grads, ratios, units)
        if self.steps and not self.steps_per_epoch:
            self.steps_per_epoch = self.steps
        self._reset()
        return out

    def _gradient_metrics(self, out: dict[str, float]) -> list[float | None]:
        """Global and per-group gradient metrics into ``out``; per-layer rms norms returned."""
        if not self.step_norms:
            return [None] * len(self.layers)
        sq = _numpy([t for norms in self.step_norms for t in norms]).reshape(len(self.step_norms), -1) ** 2
        with np.errstate(invalid="ignore", over="ignore"):
            layer_sq = sq @ self.param_layer  # steps x layers
            totals = np.sqrt(layer_sq.sum(1))
        finite = np.isfinite(totals)
        if self.first_epoch and len(self.layers) >= 2 and finite[0]:  # the gradient's reach at initialization
            out[names.INIT_GRAD_RATIO] = float(np.sqrt(layer_sq[0, 0]) / max(np.sqrt(layer_sq[0, -1]), 1e-30))
        self.first_epoch = False
        out[names.NONFINITE_GRAD_STEPS] = float((~finite).sum())
        if not finite.any():
            return [None] * len(self.layers)
        kept = layer_sq[finite]  # a skipped fp16 step must not poison the means
        out[names.GRAD_NORM], out[names.GRAD_NORM_MAX] = float(totals[finite].mean()), float(totals[finite].max())
        by_group = np.sqrt((kept @ self.layer_group).mean(0))
        out.update({names.grad_norm_of(g): float(v) for g, v in zip(self.groups, by_group, strict=True)})
        return [float(v) for v in np.sqrt(kept.mean(0))]  # rms over steps

    def _update_ratios(self, out: dict[str, float]) -> list[float | None]:
        """Group ratios into ``out``; per-layer ratios returned (medians over the sampled steps)."""
        if not self.update_samples:
            return [None] * len(self.layers)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            flat = _numpy([t for sample in self.update_samples for t in sample])
            samples = (flat.reshape(len(self.update_samples), 2, -1) ** 2) @ self.param_layer  # s x 2 x L
            by_group = samples @ self.layer_group  # steps x 2 x groups
            both = np.sqrt(np.concatenate([samples, by_group], axis=2))  # layers then groups: one median
            medians = np.median(both[:, 0] / np.maximum(both[:, 1], 1e-30), axis=0).tolist()
        n = len(self.layers)
        out.update({names.update_ratio_of(g): v for g, v in zip(self.groups, medians[n:], strict=True)})
        return medians[:n]

    def _layer_report(self, weight_sq: np.ndarray, grads: list[float | None], ratios: list[float | None],
                      units: list[dict[str, Any]]) -> dict[str, Any]:
        layers = [{"name": name or "(model)", "group": group, "params": sum(p.numel() for p in params),
                   "weight_norm": math.sqrt(float(w)), "grad_norm": g, "update_ratio": r}
                  for (name, params), group, w, g, r in zip(self.layers, self.group_of, weight_sq.tolist(), grads,
                                                             ratios, strict=True)]
        return {"layers": layers, "activations": units}

    def layer_report(self) -> dict[str, Any]:
        """Per-layer detail of the last epoch measured: for an artifact, not for metrics."""
        return _finite(self.last_report)


class NoSignals:
    """Signals switched off: the same calls, nothing measured."""

    last_report: dict[str, Any] = {}

    def continued(self) -> None:
        return None

    def gradients(self) -> None:
        return None

    def epoch_metrics(self, probe: torch.Tensor | None = None) -> dict[str, float]:
        return {}

    def layer_report(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None


def _layers(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """Modules that own trainable parameters, in model order; a container's own parameters come last
    of the model's hidden part (a transformer's position table is not its input layer)."""
    leaves, own = [], []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            (leaves if not any(True for _ in module.children()) else own).append((name, params))
    if len(leaves) >= 2:
        return [leaves[0], *leaves[1:-1], *own, leaves[-1]]
    return leaves + own


def _groups(n_layers: int) -> list[names.Group]:
    if n_layers == 1:
        return ["input"]
    return ["input", *(["hidden"] * (n_layers - 2)), "output"]  # type: ignore[list-item]


def _numpy(scalars: Any) -> np.ndarray:
    """0-d tensors (on any device) as one float64 array: one stack, one copy to the host."""
    return torch.stack(list(scalars)).double().cpu().numpy()


def _unit_shares(units: list[dict[str, Any]], dead_key: str, saturated_key: str) -> dict[str, float]:
    """Share of dead ReLU units and of saturated tanh/sigmoid units over all such units, under the given keys."""
    out = {}
    for kind, key in (("relu", dead_key), ("squash", saturated_key)):
        of_kind = [u for u in units if u["kind"] == kind]
        if of_kind:
            out[key] = sum(u["flagged"] for u in of_kind) / max(1, sum(u["units"] for u in of_kind))
    return out


class _Probe:
    """Dead ReLU and saturated tanh/sigmoid units of each activation module of ``model`` on a batch (eval mode).

    The modules are found once. Per call: a hook per activation module keeps its count as a tensor, the
    counts leave torch together (one ``tolist``), and the forward runs under ``inference_mode``. Eval mode is
    set by writing each module's ``training`` flag and put back to each module's own afterwards (what
    ``train()`` does, without its per-module ``__setattr__``), unless some module overrides ``train``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = list(model.modules())
        self.plain_train = all(type(m).train is nn.Module.train for m in self.modules)
        self.activations: list[tuple[str, nn.Module, str, float]] = []
        for name, module in model.named_modules():
            if isinstance(module, _RELUS + _SQUASHES):
                kind = "relu" if isinstance(module, _RELUS) else "squash"
                low = 0.0 if isinstance(module, nn.Tanh | nn.Hardtanh) or kind == "relu" else 0.5  # sigmoid's centre
                self.activations.append((name, module, kind, low))

    def __call__(self, probe: torch.Tensor) -> list[dict[str, Any]]:
        if not self.activations:
            return []
        seen: list[tuple[int, torch.Tensor, int]] = []  # activation index, flagged units, units
        hooks = [module.register_forward_hook(_counter(i, kind, low, seen))
                 for i, (_, module, kind, low) in enumerate(self.activations)]
        device = next((p.device for p in self.model.parameters()), probe.device)
        modes = [m.training for m in self.modules]
        try:
            self._train(False)
            with torch.inference_mode():
                self.model(probe.to(device))
        finally:
            for h in hooks:
                h.remove()
            self._train(modes)
        counts = torch.stack([flagged for _, flagged, _ in seen]).tolist() if seen else []
        return [{"name": self.activations[i][0], "kind": self.activations[i][2],
                 "type": type(self.activations[i][1]).__name__, "units": units, "flagged": int(n)}
                for (i, _, units), n in zip(seen, counts, strict=True)]

    def _train(self, modes: bool | list[bool]) -> None:
        if not self.plain_train:
            self.model.train(modes if isinstance(modes, bool) else modes[0])
            return
        for m, mode in zip(self.modules, [modes] * len(self.modules) if isinstance(modes, bool) else modes,
                           strict=True):
            m.__dict__["training"] = mode


def _counter(i: int, kind: str, low: float, seen: list[tuple[int, torch.Tensor, int]]) -> Any:
    """A forward hook that appends (i, the count of dead or saturated units, the unit count) to ``seen``."""

    def hook(_: nn.Module, __: Any, output: torch.Tensor) -> None:
        y = output.detach()
        y = y.reshape(1, -1) if y.dim() < 2 else y
        dims = (0, *range(2, y.dim()))  # a unit is a feature (N, C) or a channel (N, C, ...)
        if kind == "relu":
            flagged = (y.amax(dim=dims) <= 0).sum()
        else:
            flat = (y.float() - low).abs() > (_FLAT_TANH if low == 0.0 else _FLAT_SIGMOID)
            flagged = (flat.float().mean(dim=dims) >= _SATURATED_SHARE).sum()
        seen.append((i, flagged, int(y.shape[1])))

    return hook


def _finite(x: Any) -> Any:
    """JSON-safe: NaN/inf as None."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x

