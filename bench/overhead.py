"""What the platform costs per trial: one training config as plain PyTorch, and through ``hpo run``.

Side by side, each in a fresh process:
  (a) a hand-written PyTorch loop (same data, model, optimizer, epochs; no Ray, no MLflow);
  (b) ``hpo run`` of a 1-trial sweep of that config, with a fresh tmp HPO_HOME (its MLflow store is
      created and migrated before the clock starts: that is paid once per store, and printed apart);
  (c) ``hpo run`` of an 8-trial sweep of it, one trial at a time;
  (d) plain Ray Tune running the same loop for 1 and for 8 trials (no Optuna, no MLflow, no checkpoints):
      the floor any Tune-based tool pays on this machine.
Overhead per trial = (wall time - trials x plain training time) / trials, also as a ratio to the plain
training time. "each further trial" = the extra wall time of 8 trials over 1, less the extra training
time (the trials' own epoch_seconds), per extra trial. "first epoch" is the time from launching the
command to the end of the first trial's first epoch, read from the store (MLflow metric timestamps)
against the launch time.

Run:  .venv/bin/python bench/overhead.py [--epochs 10] [--hidden 512]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH_SIZE, LR, SEED = 64, 1e-3, 0


def plain_loop(epochs: int, hidden: int) -> dict[str, float]:
    """The same training as one trial, written by hand; returns timings (unix seconds and durations)."""
    import torch
    from torch import nn

    from trainers.models import build_model
    from trainers.tasks import load_task

    torch.set_num_threads(1)  # a trial with resources.cpu 1 gets one thread
    torch.manual_seed(SEED)
    data = load_task("digits", {})
    model = build_model("mlp", data.input_shape, data.n_classes, {"hidden": hidden, "layers": 2, "dropout": 0.0})
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    first_epoch_at = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(data.y_train), generator=shuffle)
        for start in range(0, len(order), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(data.x_train[index]), data.y_train[index])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(data.x_val), data.y_val))
        if epoch == 1:
            first_epoch_at = time.time()
    train_s = time.perf_counter() - started
    return {"train_s": train_s, "first_epoch_at": first_epoch_at, "val_loss": val_loss}


def sweep_yaml(trials: int, epochs: int, hidden: int) -> str:
    return (
        f"name: overhead{trials}\nmethod: random\nmetric: {{name: val_loss, goal: minimize}}\n"
        f"budget: {{trials: {trials}, max_concurrent: 1}}\nseed: {SEED}\n"
        f"trainer: {{task: digits, epochs: {epochs}, options: {{hidden: {hidden}}}}}\n"
        f"parameters:\n  optimizer: {{values: [adam]}}\n  lr: {LR}\n  batch_size: {BATCH_SIZE}\n"
    )


def ray_tune_loop(epochs: int, hidden: int) -> dict[str, float]:
    """(d): Ray Tune alone runs the built-in loop, 1 trial then 8; returns wall and training seconds of each."""
    import ray
    from ray import tune

    from trainers.loop import fit

    hp = {"optimizer": "adam", "lr": LR, "batch_size": BATCH_SIZE, "epochs": epochs, "hidden": hidden, "seed": SEED}

    def trainable(config: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)
        spent = {"s": 0.0}

        def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
            spent["s"] += metrics["epoch_seconds"]
            tune.report({**metrics, "train_s": spent["s"]})

        fit(hp, report, task="digits")

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    out: dict[str, float] = {}
    storage = tempfile.mkdtemp(prefix="hpo_overhead_ray_")
    try:
        for trials in (1, 8):
            started = time.perf_counter()
            grid = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=1, reuse_actors=True),
                run_config=tune.RunConfig(storage_path=storage, verbose=0),
            ).fit()
            out[f"wall_{trials}"] = time.perf_counter() - started
            out[f"train_{trials}"] = sum(float(r.metrics["train_s"]) for r in grid)
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    return out


def hpo_script() -> str:
    beside = Path(sys.executable).with_name("hpo")
    return str(beside) if beside.exists() else (shutil.which("hpo") or "hpo")


def run_sweep(trials: int, epochs: int, hidden: int) -> dict[str, Any]:
    """``hpo run`` in a fresh folder; wall time, summed epoch_seconds, and the first epoch from the store."""
    folder = Path(tempfile.mkdtemp(prefix="hpo_overhead_"))
    try:
        sweep = folder / "sweep.yaml"
        sweep.write_text(sweep_yaml(trials, epochs, hidden), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
        env["HPO_HOME"] = str(folder / ".hpo")
        store = f"sqlite:///{folder / '.hpo' / 'mlflow.db'}"
        created = time.time()
        subprocess.run([sys.executable, "-c", f"from tracker.mlflow_log import open_client; open_client({store!r})"],
                       env=env, check=True, capture_output=True)
        store_s = time.time() - created
        launched = time.time()
        done = subprocess.run([hpo_script(), "run", str(sweep), "--json"], cwd=folder, env=env,
                              capture_output=True, text=True)
        wall_s = time.time() - launched
        if done.returncode != 0:
            raise SystemExit(f"hpo run exited {done.returncode}:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout)
        with sqlite3.connect(folder / ".hpo" / "mlflow.db") as db:
            first = "SELECT MIN(timestamp) FROM metrics WHERE key = 'val_loss' AND step = 1"
            (first_epoch_ms,) = db.execute(first).fetchone()
            (train_s,) = db.execute("SELECT SUM(value) FROM metrics WHERE key = 'epoch_seconds'").fetchone()
        finished = sum(t["status"] == "FINISHED" for t in result["trials"])
        return {"wall_s": wall_s, "trials": finished, "train_s": train_s / finished, "train_total_s": train_s,
                "first_epoch_s": first_epoch_ms / 1000 - launched, "store_s": store_s}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_plain(epochs: int, hidden: int) -> dict[str, Any]:
    launched = time.time()
    done = subprocess.run([sys.executable, __file__, "--plain", "--epochs", str(epochs), "--hidden", str(hidden)],
                          capture_output=True, text=True, check=True)
    wall_s = time.time() - launched
    timings = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall_s, "trials": 1, "train_s": timings["train_s"],
            "first_epoch_s": timings["first_epoch_at"] - launched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=512)  # ~2-3 s of training for 10 epochs on one core
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # the child process of (a)
    parser.add_argument("--ray", action="store_true", help=argparse.SUPPRESS)  # the child process of (d)
    args = parser.parse_args()
    if args.plain:
        print(json.dumps(plain_loop(args.epochs, args.hidden)))
        return
    if args.ray:
        print(json.dumps(ray_tune_loop(args.epochs, args.hidden)))
        return

    print(f"digits MLP (hidden {args.hidden}, 2 layers), adam lr {LR}, batch {BATCH_SIZE}, {args.epochs} epochs; "
          f"{os.cpu_count()} cores", file=sys.stderr)
    rows = [("plain PyTorch loop", run_plain(args.epochs, args.hidden))]
    rows.append(("hpo run, 1 trial", run_sweep(1, args.epochs, args.hidden)))
    rows.append(("hpo run, 8 trials", run_sweep(8, args.epochs, args.hidden)))
    pure_s = rows[0][1]["train_s"]

    header = ["run", "wall s", "trials", "train s/trial", "overhead s/trial", "overhead / train", "first epoch s"]
    lines = []
    for name, row in rows:
        overhead = (row["wall_s"] - row["trials"] * pure_s) / row["trials"]
        lines.append([name, f"{row['wall_s']:.1f}", str(row["trials"]), f"{row['train_s']:.2f}",
                      f"{overhead:.2f}", f"{overhead / pure_s:.1f}x", f"{row['first_epoch_s']:.1f}"])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    one, eight = rows[1][1], rows[2][1]
    marginal = ((eight["wall_s"] - one["wall_s"]) - (eight["train_total_s"] - one["train_total_s"])) / 7
    done = subprocess.run([sys.executable, __file__, "--ray", "--epochs", str(args.epochs), "--hidden",
                           str(args.hidden)], capture_output=True, text=True, check=True)
    tune_only = json.loads(done.stdout.strip().splitlines()[-1])
    ray_marginal = ((tune_only["wall_8"] - tune_only["wall_1"]) - (tune_only["train_8"] - tune_only["train_1"])) / 7
    print(f"\neach further trial, hpo run:     {marginal:.2f} s overhead ({marginal / pure_s:.2f}x the training time)")
    print(f"each further trial, plain Tune:  {ray_marginal:.2f} s overhead (same loop, no Optuna/MLflow/checkpoints)")
    print(f"MLflow store created and migrated once per store: {one['store_s']:.1f} s (not in the rows above)")
    print("overhead s/trial = (wall - trials x plain train s) / trials; the plain row's overhead is python, "
          "torch and data start-up;\ntrain s/trial of the sweeps = the sum of the trial's epoch_seconds metric.")


if __name__ == "__main__":
    main()
