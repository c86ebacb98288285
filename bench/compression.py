"""What compression buys on this CPU: three trained winners, every method, side by side in one run.

Trains three winners briefly with known-good settings (the best configurations of
``bench/results/mnist1d.txt``, fewer epochs; a digits MLP of width 256), saves each as a sweep's
checkpoint would be saved, then runs the compression stage of ``hpo compress`` on it
(``trainers.compression.pipeline.compress``, no MLflow) and prints each model's table and one
side-by-side summary: accuracy drop (points), size ratio and latency ratios at batch 1 and 256 of every
variant against its fp32 winner. Accuracy on each task's validation split (what every choice is made
on: fine-tune epochs, the best student) and on its test split, read once per finished variant (MNIST-1D:
validation 400 of the official 4,000 training sequences, test the official 1,000; digits: a seeded 20%
test share, then 20% of the rest for validation). Latency: 1 torch thread (ONNX Runtime: 1 intra-op
thread), 30 timed calls after 5 warm-up.

The distilled variant is the best student of the distillation's own small sweep (``hpo.distill_search``:
TPE over temperature and alpha, the first trial at the defaults T=4, alpha=0.7), chosen on the same
validation split its accuracy is reported on. Settings that differ per model are in ``OVERRIDES``.

Run:  nice -n 10 .venv/bin/python bench/compression.py [--quick] [--models cnn ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WINNERS: dict[str, dict[str, Any]] = {
    "digits MLP": {"task": "digits", "model": "mlp", "hidden": 256, "layers": 2, "dropout": 0.1, "optimizer": "adam",
                   "lr": 3e-3, "batch_size": 64, "epochs": 20, "scheduler": "cosine"},
    "MNIST-1D CNN": {"task": "mnist1d", "model": "cnn", "hidden": 32, "layers": 4, "dropout": 0.27,
                     "optimizer": "adamw", "lr": 0.00861, "weight_decay": 8e-5, "batch_size": 32, "epochs": 15,
                     "conv_batch_norm": True, "shift": 4, "input_noise": 0.05, "scheduler": "cosine"},
    "MNIST-1D GRU": {"task": "mnist1d", "model": "gru", "hidden": 128, "layers": 2, "dropout": 0.087,
                     "optimizer": "adamw", "lr": 0.00694, "weight_decay": 1.5e-4, "batch_size": 64, "epochs": 15,
                     "clip_norm": 1.0, "scheduler": "cosine"},
}


# the defaults of `hpo compress`, but two global sparsities instead of three and a distillation sweep (time)
COMMON: dict[str, Any] = {"sparsities": (0.5, 0.8), "distill_trials": 4}
OVERRIDES: dict[str, dict[str, Any]] = {
    # the CNN's 4 blocks keep their depth in the student (3 blocks lost 4 points); longer fine-tune after pruning
    "MNIST-1D CNN": {"student_layers": 4, "finetune_epochs": 8},
    # the GRU's epochs cost 15 s on one core: 3 students of 10 epochs
    "MNIST-1D GRU": {"distill_trials": 3, "distill_epochs": 10},
}
KEYS = {"mlp": "digits MLP", "cnn": "MNIST-1D CNN", "gru": "MNIST-1D GRU"}


def settings_for(name: str, quick: bool) -> Any:
    """The compression settings of one model (``COMMON``, its ``OVERRIDES``; ``--quick`` shortens them)."""
    from trainers.compression.settings import CompressSettings

    given = {**COMMON, **OVERRIDES.get(name, {})}
    if quick:
        given.update(distill_epochs=2, distill_trials=2, finetune_epochs=1, repeats=5)
    return CompressSettings(**given).validated()


def train(name: str, config: dict[str, Any], folder: Path, epochs: int | None) -> tuple[Path, float]:
    """Train one winner with the built-in loop; its best epoch's checkpoint path and the seconds it took."""
    import torch

    from trainers.loop import fit

    hp = {k: v for k, v in config.items() if k != "task"}
    if epochs is not None:
        hp["epochs"] = epochs
    saved: dict[str, Any] = {}
    started = time.perf_counter()
    fit(hp, lambda m, c=None: saved.update(c or {}), task=config["task"], metric="val_accuracy", goal="maximize")
    path = folder / f"{name.replace(' ', '_')}.pt"
    torch.save(saved, path)
    return path, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats (a smoke run, not figures)")
    parser.add_argument("--models", nargs="+", choices=sorted(KEYS), default=sorted(KEYS, key=list(KEYS).index))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compression.txt")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    lines = [f"compression bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread, torch {torch.__version__}; "
             f"2 CPU cores shared with other jobs",
             "command: nice -n 10 .venv/bin/python bench/compression.py" + (" --quick" if args.quick else "")
             + ("" if len(args.models) == len(KEYS) else " --models " + " ".join(args.models)),
             "load average at start (1/5/15 min): " + " ".join(f"{x:.1f}" for x in os.getloadavg()), ""]
    side = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            name = KEYS[key]
            doc, header = _one(name, WINNERS[name], settings_for(name, args.quick), Path(tmp), args.quick)
            lines += header
            side += [(name, row) for row in doc["variants"]]
            print("\n".join(lines[-len(header):]), flush=True)
    lines += ["load average at end (1/5/15 min): " + " ".join(f"{x:.1f}" for x in os.getloadavg()), "",
              "== side by side (ratios against each model's fp32 winner in PyTorch; latency ratio < 1 is faster)",
              f"{'model':<14} {'variant':<26} {'runtime':<11} {'val acc':>8} {'Δ points':>9} {'test acc':>8} "
              f"{'Δ test':>7} {'size ratio':>10} {'latency b1':>10} {'latency b256':>12}"]
    fp32_test = {name: row["metrics"].get("test_accuracy", math.nan) for name, row in side if row["name"] == "fp32"}
    for name, row in side:
        test = row["metrics"].get("test_accuracy", math.nan)
        lines.append(f"{name:<14} {row['name']:<26} {row['runtime']:<11} {row['metric']:>8.4f} "
                     f"{100 * row['delta_vs_fp32']:>+9.1f} {test:>8.4f} {100 * (test - fp32_test[name]):>+7.1f} "
                     f"{row['size_ratio']:>10.2f} "
                     f"{1 / row['speedup_batch_1']:>10.2f} {1 / row['speedup_batch_256']:>12.2f}")
    text = "\n".join(lines)
    print(text[text.index("== side by side"):])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def _one(name: str, config: dict[str, Any], settings: Any, tmp: Path, quick: bool) -> tuple[dict[str, Any], list[str]]:
    """Train one winner, run the compression stage on it; its summary document and its lines of the report."""
    from hpo.compress import Source, render, summary
    from hpo.distill_search import DistillSearch
    from trainers.compression.pipeline import Winner, compress

    checkpoint, seconds = train(name, config, tmp, 3 if quick else None)
    winner = Winner.from_checkpoint(checkpoint, config["task"], "val_accuracy", "maximize")
    search = DistillSearch(config["task"], settings.distill_trials, 0, "maximize",
                           {"temperature": settings.temperature, "alpha": settings.alpha})
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        variants = compress(winner, settings, tmp / name.replace(" ", "_"), search=search)
    source = Source("-", "-", name, config["task"], winner.metric, winner.goal)
    doc = summary(source, config["model"], winner.metric, winner.goal, settings, [v.to_dict() for v in variants])
    students = next((v.trials for v in variants if v.name == "distill"), [])
    header = [f"== {name}: trained {config['epochs'] if not quick else 3} epochs in {seconds:.0f} s; "
              f"compression stage {time.perf_counter() - started:.0f} s", f"settings: {settings}", render(doc)]
    header += [f"distillation sweep: trial {t['number']}: T={t['temperature']:.2f} alpha={t['alpha']:.2f} "
               f"val_accuracy={t['metric']:.4f}{'  <- kept' if t['selected'] else ''}" for t in students]
    return doc, header + [""]


if __name__ == "__main__":
    sys.exit(main())
