"""What the training signals cost: epoch time with ``training_signals`` on and off, side by side.

For each shipped example's trainer settings (examples/sweeps/quickstart.yaml: digits MLP; mnist1d_cnn.yaml,
mnist1d_mlp.yaml, mnist1d_gru.yaml and mnist1d_pareto.yaml: MNIST-1D), ``trainers.loop.fit`` trains the
same config (the search space's middle values, fixed seed) with the signals on and off, alternating which
goes first, ``--repeats`` times. The
figure is the mean ``epoch_seconds`` (train + evaluate + the signals' per-epoch work; the one probe forward
before training is outside it), per run, then the median over repeats; the overhead is the median of the
paired ratios on/off - 1, with its range over the repeats. Three figures: the CPU time spent inside the
signals' code (its per-step norms and per-epoch work, timed around each call, and while it watches the
evaluation every call of a watched activation module: torch's hook dispatch, the hook, and the activation
itself, a slight over-count) as a share of the CPU time of an epoch with the signals off -- the cost itself,
and the figure that holds up on a shared machine;
the end-to-end CPU time per epoch, on against off; and the wall time (``epoch_seconds``), on against off.
The last two include whatever other processes did to the caches and clocks meanwhile. One torch thread.

Run:  nice -n 10 .venv/bin/python bench/training_signals.py [--repeats 5] [--epochs 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from trainers import signals as signals_module
from trainers.loop import fit
from trainers.tasks import load_task

_INSIDE = [0.0]  # CPU seconds spent inside the signals' code (hooks, per-step norms, per-epoch work)


def _accounted(f: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return f(*args, **kwargs)
        finally:
            _INSIDE[0] += time.process_time() - started
    return timed


for _name in ("__init__", "gradients", "stepped", "epoch_metrics"):
    setattr(signals_module.TrainingSignals, _name, _accounted(getattr(signals_module.TrainingSignals, _name)))

_TIMED: dict[type, type] = {}
_WATCHING = signals_module.TrainingSignals.watching


@contextmanager
def _watching_accounted(self: signals_module.TrainingSignals) -> Iterator[None]:
    """``watching`` with its set-up and counting accounted, and, while it watches, every call of a watched
    activation module (torch's hook dispatch, the hook, and the activation itself: a slight over-count)."""
    started = time.process_time()
    watched = _WATCHING(self)
    watched.__enter__()
    modules = [(module, type(module)) for _, module, _, _ in self.probe.activations]
    for module, cls in modules:
        module.__class__ = _TIMED.setdefault(cls, type(cls.__name__, (cls,), {"__call__": _accounted(cls.__call__)}))
    _INSIDE[0] += time.process_time() - started
    try:
        yield
    finally:
        started = time.process_time()
        for module, cls in modules:
            module.__class__ = cls
        watched.__exit__(None, None, None)
        _INSIDE[0] += time.process_time() - started


signals_module.TrainingSignals.watching = _watching_accounted  # type: ignore[method-assign]

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "quickstart (digits mlp)": ("digits", {"hidden": 64, "optimizer": "adam", "lr": 3e-3, "batch_size": 64}),
    "mnist1d_cnn": ("mnist1d", {"model": "cnn", "scheduler": "cosine", "optimizer": "adam", "lr": 2e-3,
                                "batch_size": 64, "hidden": 32, "layers": 3}),
    "mnist1d_mlp": ("mnist1d", {"model": "mlp", "scheduler": "cosine", "optimizer": "adam", "lr": 2e-3,
                                "batch_size": 64, "hidden": 256, "layers": 2}),
    "mnist1d_gru": ("mnist1d", {"model": "gru", "scheduler": "cosine", "clip_norm": 1.0, "optimizer": "adam",
                                "lr": 5e-3, "batch_size": 64, "hidden": 64, "layers": 1}),
    "mnist1d_pareto (mlp)": ("mnist1d", {"model": "mlp", "scheduler": "cosine", "optimizer": "adamw", "lr": 3e-3,
                                         "batch_size": 128, "hidden": 45, "layers": 2}),
}


def epoch_time(config: dict[str, Any], data: Any) -> tuple[float, float, float]:
    """Mean CPU seconds and mean wall seconds (``epoch_seconds``) per epoch of one run, the first epoch
    (one-off warm-up) left out. CPU time is what the signals cost; wall time also holds what other
    processes on a shared machine took."""
    wall: list[float] = []
    cpu: list[float] = []
    inside: list[float] = []

    def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
        wall.append(metrics["epoch_seconds"])
        cpu.append(time.process_time())
        inside.append(_INSIDE[0])

    fit(config, report, data=data)
    n = len(cpu) - 1
    return (cpu[-1] - cpu[0]) / n, statistics.fmean(wall[1:]), (inside[-1] - inside[0]) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {time.strftime('%Y-%m-%d')}")
    print("| example | CPU s / epoch, off | CPU s inside the signals / epoch | share (median, range) "
          "| end-to-end CPU on/off - 1 (median, range) | wall on/off - 1 (median, range) |")
    print("|---|---|---|---|---|---|")
    for name, (task, options) in CONFIGS.items():
        data = load_task(task, {})
        times: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
        for repeat in range(args.repeats):
            config = {**options, "epochs": args.epochs, "seed": 0}
            for signals in ((True, False) if repeat % 2 == 0 else (False, True)):
                times[signals].append(epoch_time({**config, "training_signals": signals}, data))
        cells = []
        for i in (0, 1):  # CPU, wall
            ratios = [on[i] / off[i] - 1 for on, off in zip(times[True], times[False], strict=True)]
            cells.append(f"{statistics.median(ratios):+.1%} ({min(ratios):+.1%} .. {max(ratios):+.1%})")
        shares = [on[2] / off[0] for on, off in zip(times[True], times[False], strict=True)]
        off_cpu = statistics.median(t[0] for t in times[False])
        inside = statistics.median(t[2] for t in times[True])
        share = f"{statistics.median(shares):.1%} ({min(shares):.1%} .. {max(shares):.1%})"
        print(f"| {name} | {off_cpu:.4f} | {inside:.4f} | {share} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
