"""What compression buys on this CPU: three trained winners, every method, side by side in one run.

Trains three winners briefly with known-good settings (the best configurations of
``bench/results/mnist1d.txt``, fewer epochs; a digits MLP of width 256), saves each as a sweep's
checkpoint would be saved, then runs the compression stage of ``hpo compress`` on it
(``trainers.compression.pipeline.compress``, no MLflow) and prints each model's table and one
side-by-side summary: accuracy drop (points), size ratio and latency ratios at batch 1 and 256 of every
variant against its fp32 winner. Accuracy is on each task's validation split (MNIST-1D: the official
1,000-sequence test split serves as validation; digits: a fixed 20% hold-out); there is no separate
test split. Latency: 1 torch thread (ONNX Runtime: 1 intra-op thread), 30 timed calls after 5 warm-up.

Run:  .venv/bin/python bench/compression.py [--quick] [--out bench/results/compression.txt]
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compression.txt")
    args = parser.parse_args()

    import torch

    from hpo.compress import Source, render, summary
    from trainers.compression.pipeline import Winner, compress
    from trainers.compression.settings import CompressSettings

    torch.set_num_threads(1)
    # the defaults of `hpo compress`, but two global sparsities instead of three (time)
    settings = CompressSettings(sparsities=(0.5, 0.8), distill_epochs=3 if args.quick else 0,
                                finetune_epochs=1 if args.quick else 3, repeats=5 if args.quick else 30).validated()
    lines = [f"compression bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread, torch {torch.__version__}; "
             f"2 CPU cores shared with other jobs",
             "command: .venv/bin/python bench/compression.py" + (" --quick" if args.quick else ""),
             "load average at start (1/5/15 min): " + " ".join(f"{x:.1f}" for x in os.getloadavg()),
             f"settings: {settings}", ""]
    side = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in WINNERS.items():
            checkpoint, seconds = train(name, config, Path(tmp), 3 if args.quick else None)
            winner = Winner.from_checkpoint(checkpoint, config["task"], "val_accuracy", "maximize")
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                variants = compress(winner, settings, Path(tmp) / name.replace(" ", "_"))
            source = Source("-", "-", name, config["task"], winner.metric, winner.goal)
            doc = summary(source, config["model"], winner.metric, winner.goal, settings,
                          [v.to_dict() for v in variants])
            lines += [f"== {name}: trained {config['epochs'] if not args.quick else 3} epochs in {seconds:.0f} s; "
                      f"compression stage {time.perf_counter() - started:.0f} s", render(doc), ""]
            side += [(name, row) for row in doc["variants"]]
            print("\n".join(lines[-3:]), flush=True)
    lines += ["load average at end (1/5/15 min): " + " ".join(f"{x:.1f}" for x in os.getloadavg()), "",
              "== side by side (ratios against each model's fp32 winner in PyTorch; latency ratio < 1 is faster)",
              f"{'model':<14} {'variant':<24} {'runtime':<11} {'val acc':>8} {'Δ points':>9} {'size ratio':>10} "
              f"{'latency b1':>10} {'latency b256':>12}"]
    for name, row in side:
        lines.append(f"{name:<14} {row['name']:<24} {row['runtime']:<11} {row['metric']:>8.4f} "
                     f"{100 * row['delta_vs_fp32']:>+9.1f} {row['size_ratio']:>10.2f} "
                     f"{1 / row['speedup_batch_1']:>10.2f} {1 / row['speedup_batch_256']:>12.2f}")
    text = "\n".join(lines)
    print(text[text.index("== side by side"):])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
