"""Signals from inside training: gradient and weight norms, update ratios, dead and saturated units.

A handful of per-epoch summary metrics (names in :mod:`trainers.signal_names`) for ``hpo.diagnosis``:
the global gradient norm before clipping, the update-to-weight ratio of three layer groups (the first
weighted layer, the ones between, the last), the fraction of dead ReLU and saturated tanh/sigmoid units
(on the forwards ``watching`` sees -- the built-in loop's evaluation of the validation split -- or on a probe
batch), the weight norm and non-finite counts. Per-layer detail stays out of the metrics (``layer_report``,
an artifact per trial), so the store grows by a constant, not by the layer count.

Cheap by construction (bench/training_signals.py measures it): one fused norm of the gradients on 4 evenly
spaced steps per epoch (no host sync), a negated copy of the weights on the middle one for its update ratio,
no forward of its own when watching; everything measured leaves torch in two copies per epoch. The built-in
loop does not call the signals on the other steps at all. Your own loop::

    signals = TrainingSignals(model, optimizer)             # once: hooks the optimizer's step
    ...                                                     # your loop, unchanged
    report({**metrics, **signals.epoch_metrics(probe=x)})   # once per epoch (x: a batch of inputs)

or, instead of the probe, ``with signals.watching(): evaluate(...)`` before ``epoch_metrics()``. Without a
``gradients()`` call before your clipping, the gradient norm is measured at the optimizer's step, after it.
The built-in loop passes no optimizer (no hooks) and calls ``gradients(step)`` and ``stepped(step)`` itself,
on ``measured_steps`` only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
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
# steps per epoch whose gradients are measured, evenly spaced from the first (0, 1/4, 1/2, 3/4 of the epoch);
# the update ratio on the middle one: not the first, which can be a step fp16's GradScaler skips while it
# calibrates, nor the epoch's last, often a short batch. Fixed positions: a rerun samples the same steps.
# Few on purpose: a gradient sample costs ~0.1-0.3% of a small MLP's epoch, an update sample ~0.8%
# (bench/training_signals.py); with 2 gradient samples an lr far too high no longer shows its exploding
# gradients (bench/diagnosis_signals.py: 0 of 5 runs, 3 of 5 with 4, 5 of 5 with 16).
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
        self.groups = [g for g in names.GROUPS if g in self.group_of]
        self.grad_keys = [names.grad_norm_of(g) for g in self.groups]
        self.update_keys = [names.update_ratio_of(g) for g in self.groups]
        # a (parameters x (layers + groups)) 0/1 matrix: squared norms per parameter become per layer and per
        # group in one matmul at epoch end
        owner = [i for i, (_, ps) in enumerate(self.layers) for _ in ps]
        group_of_param = [len(self.layers) + self.groups.index(self.group_of[i]) for i in owner]
        self.columns = np.zeros((len(self.params), len(self.layers) + len(self.groups)))
        self.columns[range(len(self.params)), owner] = 1.0
        self.columns[range(len(self.params)), group_of_param] = 1.0
        self.probe = _Probe(model)
        self.steps_per_epoch = steps_per_epoch
        self.handles = [] if optimizer is None else [optimizer.register_step_pre_hook(self._before_step),
                                                      optimizer.register_step_post_hook(self._after_step)]
        self.last: tuple[Any, ...] | None = None  # what the last epoch's layer report is built from, when asked
        self.initial: dict[str, float] = {}  # reported once, with the first epoch
        if probe is not None and len(probe):
            units = self.probe(probe)
            self.initial.update(_unit_shares(units, names.INIT_DEAD_RELU, names.INIT_SATURATED))
        self.first_epoch = True
        self.layout: tuple[int | None, frozenset[int], frozenset[int]] = (0, frozenset(), frozenset())
        self.watched: list[dict[str, Any]] | None = None  # units counted by ``watching`` this epoch
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
        if self.layout[0] != self.steps_per_epoch:
            self.layout = (self.steps_per_epoch, *_layout(self.steps_per_epoch))
        # the steps a loop that knows its epoch's length calls gradients() and stepped() at (the rest: no-ops),
        # and those whose update is measured
        _, self.measured_steps, self.sampled = self.layout

    def close(self) -> None:
        """Remove the optimizer hooks."""
        for handle in self.handles:
            handle.remove()

    def gradients(self, step: int | None = None) -> None:
        """Measure the gradients now: call it after backward (and ``scaler.unscale_``), before clipping.

        Args:
            step: the optimizer step of the epoch (from 0), for a loop that calls this and :meth:`stepped` on
                ``measured_steps`` only (the built-in loop); None: the step :meth:`stepped` counted.

        Once the epoch's length is known, 4 evenly spaced steps per epoch are measured from the first
        (``measured_steps``; every step of the first epoch while its length is unknown): one fused norm per
        measured step (no host sync, no graph), which also takes the weights' norms on the middle one, whose
        update is measured (it copies the weights too); the sums, maxima and NaN checks run once, at epoch end.
        """
        self.measured = True
        if step is not None:
            self.steps = step
        if not self.params or (self.steps_per_epoch and self.steps not in self.measured_steps):
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

    def stepped(self, step: int | None = None, skipped: bool = False) -> None:
        """The optimizer stepped (``step``: as in :meth:`gradients`): on a sampled step, measure how far it moved
        the weights; count the step. ``skipped``: fp16's gradient scaler skipped it (the gradients overflowed),
        so there is no update to measure: the epoch's update ratio then has no sample."""
        if self.snapshot is not None and skipped:
            self.snapshot = None
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

    def watching(self) -> AbstractContextManager[None]:
        """Count dead and saturated units on the forwards run inside, over all their examples (the built-in loop:
        the epoch's evaluation, so no forward of its own); :meth:`epoch_metrics` reports them."""
        self.watched = []
        return self.probe.watching(self.watched)

    @torch.no_grad()
    def epoch_metrics(self, probe: torch.Tensor | None = None) -> dict[str, float]:
        """The epoch's signals (then start a new epoch); ``probe``: inputs for the dead/saturated units, when
        no :meth:`watching` counted them this epoch.

        Returns:
            ``signals/...`` metrics; those that were not measured (no step, no ReLU, no probe) are absent.
        """
        out: dict[str, float] = dict(self.initial)
        self.initial = {}
        # every norm of the epoch leaves torch in one copy, then one matmul makes them per layer and per group
        # (numpy's per-call cost is a fraction of torch's on tiny arrays)
        n, n_grads = len(self.params), len(self.grad_norms)
        flat = _numpy([*chain.from_iterable(self.grad_norms), *chain.from_iterable(self.update_norms),
                       *torch._foreach_norm(self.params)])  # type: ignore[arg-type]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # inf weights: counted below
            both = (flat.reshape(-1, n) ** 2) @ self.columns  # rows: grads, updates/befores, weights
            layer_grads = self._gradient_metrics(both[:n_grads], out)
            ratios = self._update_ratios(np.sqrt(both[n_grads:-1]), out)
        weight_sq = both[-1, :len(self.layers)]
        total = math.sqrt(float(weight_sq.sum()))
        bad = 0 if math.isfinite(total) else sum(int((~torch.isfinite(p)).sum()) for p in self.params)
        out[names.WEIGHT_NORM], out[names.NONFINITE_WEIGHTS] = total, float(bad)
        units = self.watched if self.watched is not None else (
            self.probe(probe) if probe is not None and probe.shape[0] else [])
        self.watched = None
        out.update(_unit_shares(units, names.DEAD_RELU, names.SATURATED))
        self.last = (weight_sq, layer_grads, ratios, units)
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
        # the built-in loop samples 1 step per epoch: the median of 1 or 2 is their mean, at a fraction of the cost
        medians = (np.median(ratios, axis=0) if len(ratios) > 2 else ratios.sum(0) / len(ratios)).tolist()
        n = len(self.layers)
        out.update(zip(self.update_keys, medians[n:], strict=True))
        return medians[:n]

    def layer_report(self) -> dict[str, Any]:
        """Per-layer detail of the last epoch measured: for an artifact, not for metrics (built when asked:
        the built-in loop asks at its best epochs only)."""
        if self.last is None:
            return {}
        weight_sq, grads, ratios, units = self.last
        layers = [{"name": name or "(model)", "group": group, "params": size, "weight_norm": math.sqrt(w),
                   "grad_norm": g, "update_ratio": r}
                  for (name, _), size, group, w, g, r in zip(self.layers, self.layer_sizes, self.group_of,
                                                              weight_sq.tolist(), grads, ratios, strict=True)]
        return _finite({"layers": layers, "activations": units})


class NoSignals:
    """Signals switched off: the same calls, nothing measured."""

    measured_steps: frozenset[int] = frozenset()

    def continued(self) -> None:
        return None

    def gradients(self, step: int | None = None) -> None:
        return None

    def stepped(self, step: int | None = None, skipped: bool = False) -> None:
        return None

    def watching(self) -> AbstractContextManager[None]:
        return nullcontext()

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


def _layout(steps_per_epoch: int | None) -> tuple[frozenset[int], frozenset[int]]:
    """The steps whose gradients are measured and those whose update is, by an epoch's length (unknown:
    every step's gradients, steps 0, 1, 3, 7, ...'s updates)."""
    if not steps_per_epoch:
        return frozenset(), frozenset(2 ** i - 1 for i in range(7))
    steps = sorted({i * steps_per_epoch // _GRAD_SAMPLES for i in range(_GRAD_SAMPLES)})
    return frozenset(steps), frozenset(steps[len(steps) // 2:][:1])


def _numpy(scalars: Any) -> np.ndarray:
    """0-d tensors (on any device) as one float64 array: one stack, one copy to the host."""
    stacked = torch.stack(list(scalars)).cpu()
    return (stacked if stacked.dtype in (torch.float32, torch.float64) else stacked.float()).numpy().astype(np.float64)


def _unit_shares(units: list[dict[str, Any]], dead_key: str, saturated_key: str) -> dict[str, float]:
    """Share of dead ReLU units and of saturated tanh/sigmoid units over all such units, under the given keys."""
    out = {}
    for kind, key in (("relu", dead_key), ("squash", saturated_key)):
        of_kind = [u for u in units if u["kind"] == kind]
        if of_kind:
            out[key] = sum(u["flagged"] for u in of_kind) / max(1, sum(u["units"] for u in of_kind))
    return out


class _Probe:
    """Dead ReLU and saturated tanh/sigmoid units of each activation module of ``model``: on a batch of its own
    (a forward in eval mode), or on the forwards someone else runs (``watching``: the epoch's evaluation).

    The modules are found once. While watching, a hook per activation module keeps one number per unit and
    forward as a tensor (a ReLU's largest output, a tanh/sigmoid's count of outputs in the flat zone); they
    leave torch together (one copy) and numpy counts the flagged units. A batch of its own runs under
    ``inference_mode``, in eval mode set by writing each module's ``training`` flag and put back to each
    module's own afterwards (what ``train()`` does, without its per-module ``__setattr__``), unless some
    module overrides ``train``.
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
        """The units of one forward of ``probe`` in eval mode, under ``inference_mode``."""
        device = probe.device if self.first_param is None else self.first_param.device
        modes = [m.training for m in self.modules]
        units: list[dict[str, Any]] = []
        try:
            self._train(False)
            with self.watching(units), torch.inference_mode():
                self.model(probe.to(device))
        finally:
            self._train(modes)
        return units

    @contextmanager
    def watching(self, units: list[dict[str, Any]]) -> Iterator[None]:
        """The units of the forwards run inside (over all their examples) into ``units``, once it ends."""
        if not self.activations:
            yield
            return
        seen: list[tuple[int, torch.Tensor, int, int]] = []  # activation index, per-unit values, units, outputs
        hooks = [module.register_forward_hook(_counter(i, kind, low, seen))
                 for i, (_, module, kind, low) in enumerate(self.activations)]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()
        units += self._count(seen)

    def _count(self, seen: list[tuple[int, torch.Tensor, int, int]]) -> list[dict[str, Any]]:
        """Flagged units per activation module, from its hook's values over every forward seen."""
        if not seen:
            return []
        values = torch.cat([v for _, v, _, _ in seen]).cpu().numpy()  # one copy to the host
        per: dict[int, tuple[np.ndarray, int]] = {}  # activation index -> values over all calls, outputs per unit
        start = 0
        for i, _, n, outputs in seen:
            part, start = values[start:start + n], start + n
            if i in per:  # another batch: a ReLU's largest output, a tanh/sigmoid's flat count and its outputs
                kept, total = per[i]
                part = np.maximum(kept, part) if self.activations[i][2] == "relu" else kept + part
                outputs += total
            per[i] = (part, outputs)
        units = []
        for i, (part, outputs) in per.items():
            name, module, kind, _ = self.activations[i]
            # fp32 like the values: the share is compared as torch's mean would be
            flagged = (part <= 0) if kind == "relu" else (part / outputs >= _SATURATED_SHARE)
            units.append({"name": name, "kind": kind, "type": type(module).__name__, "units": len(part),
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

