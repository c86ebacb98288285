"""What the resumable trial state costs per epoch: the built-in loop with and without ``hpo.trial_state``.

Trains the same digits trials (MLP, 1 torch thread) with ``NoState`` and with ``FileState`` (one
``torch.save`` of the snapshot per epoch, plus the best epoch's checkpoint when it improved, each written
to a temporary file and renamed), alternating the two, several rounds; prints the median epoch time of
each, the difference per epoch, and the state file's size.

    python bench/trial_state_cost.py --rounds 5 --epochs 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import torch

from hpo.trial_state import FileState
from trainers.loop import NoState, fit

SIZES = {"mlp-32": {"hidden": 32}, "mlp-256x2": {"hidden": 256, "layers": 2},
         "mlp-1024x3": {"hidden": 1024, "layers": 3}}


def _epoch_seconds(config: dict[str, Any], state: Any) -> list[float]:
    stamps = [time.perf_counter()]
    fit(config, lambda metrics, checkpoint=None: stamps.append(time.perf_counter()), task="digits",
        metric="val_accuracy", goal="maximize", state=state)
    return [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]  # the first epoch also builds the model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, digits, {args.epochs} epochs x {args.rounds} rounds per setting")
    print(f"{'model':<12} {'params':>9} {'no state ms':>12} {'state ms':>9} {'+ms/epoch':>10} {'state file':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for name, options in SIZES.items():
            config = {"epochs": args.epochs, "seed": 0, "optimizer": "adam", "lr": 1e-3, **options}
            plain: list[float] = []
            saved: list[float] = []
            for round_ in range(args.rounds):
                plain += _epoch_seconds(config, NoState())
                saved += _epoch_seconds(config, FileState(folder, f"{name}-{round_}", resume=False))
            size = os.path.getsize(os.path.join(folder, f"{name}-0.pt"))
            params = sum(p.numel() for p in torch.load(os.path.join(folder, f"{name}-0.pt"),
                                                       weights_only=True)["runs"][0]["model"].values())
            a, b = statistics.median(plain) * 1000, statistics.median(saved) * 1000
            print(f"{name:<12} {params:>9,} {a:>12.1f} {b:>9.1f} {b - a:>10.1f} {size / 1e6:>9.2f} MB")


if __name__ == "__main__":
    main()
