"""Signals from inside training: gradient and weight norms, update ratios, dead and saturated units.

A handful of per-epoch summary metrics (names in :mod:`trainers.signal_names`) for ``hpo.diagnosis``:
the global gradient norm before clipping, the update-to-weight ratio of three layer groups (the first
weighted layer, the ones between, the last), the fraction of dead ReLU and saturated tanh/sigmoid units
on a small probe batch, the weight norm and non-finite counts. Per-layer detail stays out of the metrics
(``layer_report``, an artifact per trial), so the store grows by a constant, not by the layer count.

Cheap by construction (bench/training_signals.py measures it): one fused norm on 4 evenly spaced steps per
epoch (no host sync), a negated copy of the weights on 2 of them for the update ratio, one no-grad forward
of the probe per epoch; everything measured leaves torch in two copies per epoch. Steps that are not
sampled cost a modulo and a counter. Your own loop::

    signals = TrainingSignals(model, optimizer)             # once: hooks the optimizer's step
    ...                                                     # your loop, unchanged
    report({**metrics, **signals.epoch_metrics(probe=x)})   # once per epoch (x: a batch of inputs)

Without a ``gradients()`` call before your clipping, the gradient norm is measured at the optimizer's
step, after it. The built-in loop passes no optimizer (no hooks) and calls ``gradients()`` and
``stepped()`` itself.
"""

from __future__ import annotations

import math
from itertools import chain
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
# steps per epoch whose gradients are measured, evenly spaced from the first (all of a shorter epoch); the
# update ratio on every other one of them (the 2nd and 4th): not the first, which can be a step fp16's
# GradScaler skips while it calibrates. Fixed positions: a rerun samples the same steps.
_GRAD_SAMPLES = 4


class TrainingSignals:
    """Per-epoch statistics of one model and its optimizer.

    Args:
        model: the model (the bare module, not a DDP wrapper around it).
        optimizer: its optimizer, for a loop of your own: its step is hooked to call :meth:`gradients`
            (when the loop did not for the step) and :meth:`stepped`. None: the loop calls both itself.
        steps_per_epoch: optimizer steps per epoch, to spread the samples (else learnt after the first
            epoch, which measures the gradients at every step and the updates at steps 1, 2, 4, 8, ...).
        probe: inputs to measure dead and saturated units on at once, before training (the
            ``init_*`` signals, logged with the first epoch).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 steps_per_epoch: int | None = None, probe: torch.Tensor | None = None) -> None:
        self.model = model
        self.layers = _layers(model)
        self.params = [p for _, params in self.layers for p in params]
        self.group_of = _groups(len(self.layers))
        self.layer_sizes = [sum(p.numel() for p in params) for _, params in self.layers]
        # (parameters x layers) and (layers x groups) 0/1 matrices: per-step sums become one matmul at epoch end
        owner = [i for i, (_, ps) in enumerate(self.layers) for _ in ps]
        self.param_layer = np.zeros((len(self.params), len(self.layers)))
        self.param_layer[range(len(self.params)), owner] = 1.0
        self.groups = [g for g in names.GROUPS if g in self.group_of]
        self.grad_keys = [names.grad_norm_of(g) for g in self.groups]
        self.update_keys = [names.update_ratio_of(g) for g in self.groups]
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
        self.grad_norms: list[tuple[torch.Tensor, ...]] = []  # per measured step: each parameter's gradient norm
        # per sampled step: each parameter's update norm, then its norm before the step
        self.update_norms: list[tuple[torch.Tensor, ...]] = []
        self.snapshot: tuple[list[torch.Tensor], tuple[torch.Tensor, ...]] | None = None  # -weights, their norms
        per = self.steps_per_epoch
        if per:
            self.grad_stride = -(-per // _GRAD_SAMPLES)
            self.sampled = frozenset(range(self.grad_stride, per, 2 * self.grad_stride)) or frozenset({0})
        else:  # every step's gradients, steps 0, 1, 3, 7, ...'s updates, until the epoch's length is known
            self.grad_stride = 1
            self.sampled = frozenset(2 ** i - 1 for i in range(7))
        # the steps a loop that knows its epoch's length must call gradients() and stepped() at (the rest: no-ops)
        self.measured_steps = frozenset(range(0, per or 0, self.grad_stride))

    def close(self) -> None:
        """Remove the optimizer hooks."""
        for handle in self.handles:
            handle.remove()

    def gradients(self, step: int | None = None) -> None:
        """Measure the gradients now: call it after backward (and ``scaler.unscale_``), before clipping.

        Args:
            step: the optimizer step of the epoch (from 0), for a loop that calls this and :meth:`stepped` on
                ``measured_steps`` only (the built-in loop); None: the step :meth:`stepped` counted.

        Once the epoch's length is known, 4 evenly spaced steps per epoch are measured (every step of a
        shorter epoch): one fused norm per measured step (no host sync, no graph), which also takes the
        weights' norms on the steps whose update is measured (those copy the weights too); the sums, maxima
        and NaN checks run once, at epoch end.
        """
        self.measured = True
        if step is not None:
            self.steps = step
        if self.steps % self.grad_stride or not self.params:
            return
        n = len(self.params)
        if self.steps in self.sampled:
            with torch.no_grad():  # minus the weights before the step: ``stepped`` adds the new ones to it
                negated = torch._foreach_neg(self.params)
                norms = _norms(self.params, with_weights=True)
            self.snapshot = (negated, norms[n:])
        else:
            norms = _norms(self.params, with_weights=False)
        if any(p.grad is not None and not p.grad.is_sparse for p in self.params):
            self.grad_norms.append(norms[:n])

    def stepped(self, step: int | None = None) -> None:
        """The optimizer stepped (``step``: as in :meth:`gradients`): on a sampled step, measure how far it moved
        the weights; count the step."""
        if self.snapshot is not None:
            difference, before = self.snapshot
            with torch.no_grad():
                torch._foreach_add_(difference, self.params)  # w_after - w_before
                self.update_norms.append((*torch._foreach_norm(difference), *before))
            self.snapshot = None
        self.measured = False
        self.steps = (self.steps if step is None else step) + 1

    # the optimizer's hooks, for loops of one's own
    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self.measured:
            self.gradients()

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.stepped()

    @torch.no_grad()
    def epoch_metrics(self, probe: torch.Tensor | None = None) -> dict[str, float]:
        """The epoch's signals (then start a new epoch); ``probe``: inputs for the dead/saturated units.

        Returns:
            ``signals/...`` metrics; those that were not measured (no step, no ReLU, no probe) are absent.
        """
        out: dict[str, float] = dict(self.initial)
        self.initial = {}
        # every norm of the epoch leaves torch in one copy, then two matmuls make them per layer and per group
        # (numpy's per-call cost is a fraction of torch's on tiny arrays)
        n, n_grads = len(self.params), len(self.grad_norms)
        flat = _numpy([*chain.from_iterable(self.grad_norms), *chain.from_iterable(self.update_norms),
                       *torch._foreach_norm(self.params)])  # type: ignore[arg-type]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # inf weights: counted below
            layer_sq = (flat.reshape(-1, n) ** 2) @ self.param_layer  # rows: grads, updates/befores, weights
            both = np.concatenate([layer_sq, layer_sq @ self.layer_group], axis=1)  # columns: layers, groups
            layer_grads = self._gradient_metrics(both[:n_grads], out)
            ratios = self._update_ratios(np.sqrt(both[n_grads:-1]), out)
        weight_sq = layer_sq[-1]
        total = math.sqrt(float(weight_sq.sum()))
        bad = 0 if math.isfinite(total) else sum(int((~torch.isfinite(p)).sum()) for p in self.params)
        out[names.WEIGHT_NORM], out[names.NONFINITE_WEIGHTS] = total, float(bad)
        units = self.probe(probe) if probe is not None and probe.shape[0] else []
        out.update(_unit_shares(units, names.DEAD_RELU, names.SATURATED))
        self.last_report = self._layer_report(weight_sq, layer_grads, ratios, units)
        if self.steps and not self.steps_per_epoch:
            self.steps_per_epoch = self.steps
        self._reset()
        return out

    def _gradient_metrics(self, sq: np.ndarray, out: dict[str, float]) -> list[float | None]:
        """Global and per-group gradient metrics into ``out`` from the squared norms (rows: measured steps;
        columns: layers, then groups); per-layer rms norms returned."""
        n = len(self.layers)
        if not len(sq):
            return [None] * n
        totals = np.sqrt(sq[:, :n].sum(1))
        finite = np.isfinite(totals)
        if self.first_epoch and n >= 2 and finite[0]:  # the gradient's reach at initialization
            out[names.INIT_GRAD_RATIO] = math.sqrt(sq[0, 0]) / max(math.sqrt(sq[0, n - 1]), 1e-30)
        self.first_epoch = False
        kept = int(finite.sum())
        out[names.NONFINITE_GRAD_STEPS] = float(len(finite) - kept)
        if not kept:
            return [None] * n
        if kept < len(finite):  # a skipped fp16 step must not poison the means
            sq, totals = sq[finite], totals[finite]
        out[names.GRAD_NORM], out[names.GRAD_NORM_MAX] = float(totals.sum() / kept), float(totals.max())
        rms = np.sqrt(sq.sum(0) / kept).tolist()  # over steps: layers, then groups
        out.update(zip(self.grad_keys, rms[n:], strict=True))
        return rms[:n]

    def _update_ratios(self, norms: np.ndarray, out: dict[str, float]) -> list[float | None]:
        """Group ratios into ``out`` from the norms (rows: each sampled step's update, then the weights before
        it; columns: layers, then groups); per-layer ratios returned (medians over the sampled steps)."""
        if not len(norms):
            return [None] * len(self.layers)
        ratios = norms[0::2] / np.maximum(norms[1::2], 1e-30)
        # the built-in loop samples 2 steps: their median is their mean, at a fraction of np.median's cost
        medians = (np.median(ratios, axis=0) if len(ratios) > 2 else ratios.sum(0) / len(ratios)).tolist()
        n = len(self.layers)
        out.update(zip(self.update_keys, medians[n:], strict=True))
        return medians[:n]

    def _layer_report(self, weight_sq: np.ndarray, grads: list[float | None], ratios: list[float | None],
                      units: list[dict[str, Any]]) -> dict[str, Any]:
        layers = [{"name": name or "(model)", "group": group, "params": size, "weight_norm": math.sqrt(w),
                   "grad_norm": g, "update_ratio": r}
                  for (name, _), size, group, w, g, r in zip(self.layers, self.layer_sizes, self.group_of,
                                                              weight_sq.tolist(), grads, ratios, strict=True)]
        return {"layers": layers, "activations": units}

    def layer_report(self) -> dict[str, Any]:
        """Per-layer detail of the last epoch measured: for an artifact, not for metrics."""
        return _finite(self.last_report)


class NoSignals:
    """Signals switched off: the same calls, nothing measured."""

    last_report: dict[str, Any] = {}
    measured_steps: frozenset[int] = frozenset()

    def continued(self) -> None:
        return None

    def gradients(self, step: int | None = None) -> None:
        return None

    def stepped(self, step: int | None = None) -> None:
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


def _norms(params: list[nn.Parameter], with_weights: bool) -> tuple[torch.Tensor, ...]:
    """Each parameter's gradient norm (0 where it got none), then (``with_weights``) its own norm: one fused
    call when every parameter has a dense gradient."""
    grads = [p.grad for p in params]
    weights = params if with_weights else []
    if all(g is not None and not g.is_sparse for g in grads):
        return tuple(torch._foreach_norm([*grads, *weights]))  # type: ignore[list-item]
    return (*(torch.linalg.vector_norm(g) if g is not None and not g.is_sparse else torch.zeros((), device=p.device)
              for g, p in zip(grads, params, strict=True)), *(torch._foreach_norm(weights) if weights else ()))


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

    The modules are found once. Per call: a hook per activation module keeps one number per unit as a tensor
    (a ReLU's largest output, a tanh/sigmoid's count of outputs in the flat zone), they leave torch together
    (one copy) and numpy counts the flagged units; the forward runs under ``inference_mode``. Eval mode is
    set by writing each module's ``training`` flag and put back to each module's own afterwards (what
    ``train()`` does, without its per-module ``__setattr__``), unless some module overrides ``train``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = list(model.modules())
        self.first_param = next(model.parameters(), None)  # where the model lives: ``to()`` keeps the object
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
        seen: list[tuple[int, torch.Tensor, int, int]] = []  # activation index, per-unit values, units, outputs
        hooks = [module.register_forward_hook(_counter(i, kind, low, seen))
                 for i, (_, module, kind, low) in enumerate(self.activations)]
        device = probe.device if self.first_param is None else self.first_param.device
        modes = [m.training for m in self.modules]
        try:
            self._train(False)
            with torch.inference_mode():
                self.model(probe.to(device))
        finally:
            for h in hooks:
                h.remove()
            self._train(modes)
        if not seen:
            return []
        values = torch.cat([v for _, v, _, _ in seen]).cpu().numpy()
        units: list[dict[str, Any]] = []
        start = 0
        for i, _, n, outputs in seen:
            name, module, kind, _ = self.activations[i]
            part = values[start:start + n]
            start += n
            # fp32 like the values: the share is compared as torch's mean would be
            flagged = (part <= 0) if kind == "relu" else (part / outputs >= _SATURATED_SHARE)
            units.append({"name": name, "kind": kind, "type": type(module).__name__, "units": n,
                          "flagged": int(flagged.sum())})
        return units

    def _train(self, modes: bool | list[bool]) -> None:
        if not self.plain_train:
            self.model.train(modes if isinstance(modes, bool) else modes[0])
            return
        for m, mode in zip(self.modules, [modes] * len(self.modules) if isinstance(modes, bool) else modes,
                           strict=True):
            m.__dict__["training"] = mode


def _counter(i: int, kind: str, low: float, seen: list[tuple[int, torch.Tensor, int]]) -> Any:
    """A forward hook that appends (i, one fp32 value per unit, the unit count, outputs per unit) to ``seen``: a
    ReLU's largest output (dead when <= 0), or a tanh/sigmoid's count of outputs in its flat zone."""

    def hook(_: nn.Module, __: Any, output: torch.Tensor) -> None:
        y = output.detach()
        y = y.reshape(1, -1) if y.dim() < 2 else y
        dims = (0, *range(2, y.dim()))  # a unit is a feature (N, C) or a channel (N, C, ...)
        if kind == "relu":
            values = y.amax(dim=dims).float()
        else:
            y = y.float()  # the flat zone's bounds in fp32 (a no-op unless under autocast)
            flat = (y if low == 0.0 else y - low).abs() > (_FLAT_TANH if low == 0.0 else _FLAT_SIGMOID)
            values = flat.sum(dim=dims, dtype=torch.float32)
        units = y.shape[1]
        seen.append((i, values, units, y.numel() // max(1, units)))

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

