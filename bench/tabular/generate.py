"""Learning curves of real MNIST-1D MLP configurations, for the tabular search benchmark.

Configurations come from a scrambled Sobol design (Optuna's QMCSampler, seed ``--design-seed``) over the
space of ``bench/tabular/mnist1d_mlp.yaml``, drawn through the same define-by-run function ``hpo run``
uses; configuration i is always the i-th point of that design, so any prefix of it is a balanced design.
Each one trains in this process (no Ray, one torch thread) through ``trainers.loop.fit`` for the sweep
file's epochs, and every epoch's train/val loss and accuracy and its seconds are kept.

Validation split: 800 sequences held out (seeded) of the official 4,000 training sequences; the model
trains on the other 3,200. The official test split is not touched.

Resumable and shardable: ``--shard k --shards n`` trains the indices i with i % n == k, skips those its
file already holds, and rewrites ``data/curves-<k>.npz`` atomically every few configurations, so it can be
stopped at any time and started again. ``table.load`` merges every shard.

Run:  nice -n 10 .venv/bin/python bench/tabular/generate.py --count 2000 [--shard 0 --shards 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
SWEEP = HERE / "mnist1d_mlp.yaml"
DATA = HERE / "data"
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds")
VAL_SIZE = 800
SPLIT_SEED = 0
TRAIN_SEED = 0
SAVE_EVERY = 5


def design(count: int, seed: int) -> list[dict[str, Any]]:
    """The first ``count`` configurations (sampled parameters only) of the seeded Sobol design."""
    import optuna

    from hpo.loading import load_sweep
    from hpo.space import define_by_run

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # QMCSampler
    config, _ = load_sweep(SWEEP)
    space_fn = define_by_run(config)
    sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                         warn_independent_sampling=False)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    points = []
    for _ in range(count):
        trial = study.ask()
        space_fn(trial)
        points.append(dict(trial.params))
        study.tell(trial, 0.0)
    return points


def split_data() -> Any:
    """MNIST-1D's training split cut into 3,200 training and 800 validation sequences (seeded)."""
    import torch

    from trainers.data import TaskData
    from trainers.tasks import load_task

    full = load_task("mnist1d", {})
    order = torch.randperm(len(full.y_train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val, train = order[:VAL_SIZE], order[VAL_SIZE:]
    return TaskData("mnist1d_trainval", full.x_train[train], full.y_train[train],
                    full.x_train[val], full.y_train[val], n_classes=full.n_classes)


def train_one(params: dict[str, Any], fixed: dict[str, Any], epochs: int, data: Any) -> tuple[np.ndarray, str]:
    """One configuration's curves, (len(METRICS), epochs) with NaN after a divergence; and its status."""
    from trainers.loop import Diverged, fit

    curves = np.full((len(METRICS), epochs), np.nan, dtype=np.float32)

    def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
        e = int(metrics["epoch"]) - 1
        for m, name in enumerate(METRICS):
            curves[m, e] = metrics.get(name, np.nan)

    status = "complete"
    try:
        fit({**fixed, **params, "epochs": epochs, "seed": TRAIN_SEED}, report, data=data,
            metric="val_accuracy", goal="maximize")
    except Diverged:
        status = "diverged"
    return curves, status


def shard_file(shard: int) -> Path:
    return DATA / f"curves-{shard}.npz"


def read_shard(path: Path) -> dict[str, Any]:
    """A shard's rows as lists: index, params (JSON), status, curves."""
    if not path.is_file():
        return {"index": [], "params": [], "status": [], "curves": []}
    with np.load(path, allow_pickle=False) as f:
        return {"index": list(f["index"]), "params": list(f["params"]), "status": list(f["status"]),
                "curves": list(f["curves"])}


def write_shard(path: Path, rows: dict[str, Any], epochs: int, design_seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(
        tmp, index=np.asarray(rows["index"], dtype=np.int32), params=np.asarray(rows["params"], dtype=str),
        status=np.asarray(rows["status"], dtype=str), curves=np.stack(rows["curves"]).astype(np.float32),
        metrics=np.asarray(METRICS), epochs=np.int32(epochs), design_seed=np.int32(design_seed),
        val_size=np.int32(VAL_SIZE),
    )
    tmp.replace(path)  # atomic: a stopped run never leaves half a file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="configurations of the design to cover")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--design-seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from hpo.loading import load_sweep

    torch.set_num_threads(1)
    config, _ = load_sweep(SWEEP)
    epochs = int(config.trainer.epochs)
    fixed = dict(config.trainer.options)
    points = design(args.count, args.design_seed)
    path = shard_file(args.shard)
    rows = read_shard(path)
    done = set(int(i) for i in rows["index"])
    todo = [i for i in range(args.count) if i % args.shards == args.shard and i not in done]
    data = split_data()
    started, new = time.monotonic(), 0
    print(f"shard {args.shard}/{args.shards}: {len(done)} done, {len(todo)} to go", file=sys.stderr, flush=True)
    for i in todo:
        curves, status = train_one(points[i], fixed, epochs, data)
        rows["index"].append(i)
        rows["params"].append(json.dumps(points[i], sort_keys=True))
        rows["status"].append(status)
        rows["curves"].append(curves)
        new += 1
        if new % SAVE_EVERY == 0 or i == todo[-1]:
            write_shard(path, rows, epochs, args.design_seed)
            rate = new / (time.monotonic() - started) * 3600
            print(f"[{(time.monotonic() - started) / 60:6.1f} min] {len(rows['index'])} configs in {path.name}, "
                  f"{rate:.0f} configs/hour", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
