"""What the platform costs: start-up to the first epoch, and per trial, side by side in one run.

Each in a fresh process, the clock starting at its launch:
  (a) a hand-written PyTorch loop (same data, model, optimizer, epochs; no Ray, no MLflow);
  (b) plain Ray Tune running the built-in loop, 1 trial (no Optuna, no MLflow, no checkpoints): the floor
      any Tune-based tool pays on this machine; then 8 trials in the same process, for the per-trial cost;
  (c) ``hpo run`` of a 1-trial sweep of that config with an existing store (created beforehand);
  (d) the same with no store: ``hpo run`` creates it (from the cached migrated template);
  (e) the same with no store and no template: the first sweep ever on this machine and MLflow version
      (the template is built by MLflow's migrations, then copied);
  (f) ``hpo run`` of an 8-trial sweep, one trial at a time, existing store.
"first epoch" is the time from launching the command to the end of the first trial's first epoch: for
``hpo run`` read from the store (MLflow metric timestamps), for the others reported by the loop itself.
Overhead per trial = (wall time - trials x plain training time) / trials. "each further trial" = the
extra wall time of 8 trials over 1, less the extra training time (the trials' own epoch_seconds), per
extra trial. ``--rounds N`` repeats every row N times, interleaved, and prints the median and range.

``--baseline DIR`` adds ``hpo run`` rows for another checkout (e.g. ``git worktree add /tmp/main main``),
in the same run, for a before/after.

Run:  .venv/bin/python bench/overhead.py [--epochs 10] [--hidden 512] [--rounds 1] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
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
    """(b): Ray Tune alone runs the built-in loop, 1 trial then 8; wall and training seconds of each, and
    the unix time the first trial's first epoch ended."""
    import ray
    from ray import tune

    from trainers.loop import fit

    hp = {"optimizer": "adam", "lr": LR, "batch_size": BATCH_SIZE, "epochs": epochs, "hidden": hidden, "seed": SEED}

    first_epoch = Path(tempfile.mkdtemp(prefix="hpo_overhead_first_")) / "first_epoch_at"

    def trainable(config: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)
        spent = {"s": 0.0}

        def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
            spent["s"] += metrics["epoch_seconds"]
            if not first_epoch.exists():  # the first trial's first epoch (Tune keeps no result files here)
                first_epoch.write_text(repr(time.time()), encoding="utf-8")
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
            if trials == 1:
                out["first_epoch_at"] = float(first_epoch.read_text(encoding="utf-8"))
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(first_epoch.parent, ignore_errors=True)
    return out


def run_ray(epochs: int, hidden: int) -> dict[str, Any]:
    launched = time.time()
    done = subprocess.run([sys.executable, __file__, "--ray", "--epochs", str(epochs), "--hidden", str(hidden)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the plain Ray Tune run exited {done.returncode}:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["first_epoch_s"] = out["first_epoch_at"] - launched
    return out


def hpo_script() -> str:
    beside = Path(sys.executable).with_name("hpo")
    return str(beside) if beside.exists() else (shutil.which("hpo") or "hpo")


def run_sweep(
    trials: int, epochs: int, hidden: int, store: str = "existing", code: str | None = None
) -> dict[str, Any]:
    """``hpo run`` in a fresh folder; wall time, summed epoch_seconds, and the first epoch from the store.

    ``store``: "existing" (created before the clock starts), "new" (``hpo run`` creates it from the
    cached template), "first" (no store and an empty template cache: MLflow's migrations run once).
    ``code``: run another checkout of hpo (``--baseline``: its folder goes first on PYTHONPATH).
    """
    folder = Path(tempfile.mkdtemp(prefix="hpo_overhead_"))
    try:
        sweep = folder / "sweep.yaml"
        sweep.write_text(sweep_yaml(trials, epochs, hidden), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
        env["HPO_HOME"] = str(folder / ".hpo")
        if store == "first":
            env["HPO_CACHE_DIR"] = str(folder / "cache")
        if code is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (code, env.get("PYTHONPATH")) if p)
        if store == "existing":
            uri = f"sqlite:///{folder / '.hpo' / 'mlflow.db'}"
            subprocess.run([sys.executable, "-c", f"from tracker.mlflow_log import open_client; open_client({uri!r})"],
                           env=env, check=True, capture_output=True)
        launched = time.time()
        verbose = [] if code is not None else ["--verbose"]  # an older checkout may not have it
        done = subprocess.run([hpo_script(), "run", str(sweep), "--json", *verbose], cwd=folder, env=env,
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
        phases = [line.split("]", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("[start-up]")]
        return {"wall_s": wall_s, "trials": finished, "train_s": train_s / finished, "train_total_s": train_s,
                "first_epoch_s": first_epoch_ms / 1000 - launched, "phases": phases}
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


ROWS = (  # (name, what runs)
    ("plain PyTorch loop", "plain"),
    ("plain Ray Tune, 1 trial", "ray"),
    ("hpo run, 1 trial, existing store", "existing"),
    ("hpo run, 1 trial, new store", "new"),
    ("hpo run, 1 trial, new store, no template yet", "first"),
    ("hpo run, 8 trials, existing store", "eight"),
)


BASELINE_ROWS = (
    ("baseline: hpo run, 1 trial, existing store", "base-existing"),
    ("baseline: hpo run, 1 trial, new store", "base-new"),
)


def measure(kind: str, epochs: int, hidden: int, baseline: str | None = None) -> dict[str, Any]:
    if kind.startswith("base-"):
        return run_sweep(1, epochs, hidden, store=kind[len("base-"):], code=baseline)
    if kind == "plain":
        return run_plain(epochs, hidden)
    if kind == "ray":
        return run_ray(epochs, hidden)
    if kind == "eight":
        return run_sweep(8, epochs, hidden)
    return run_sweep(1, epochs, hidden, store=kind)


def _spread(values: list[float], digits: int = 1) -> str:
    values = sorted(values)
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({values[0]:.{digits}f}-{values[-1]:.{digits}f})"


def report(runs: dict[str, list[dict[str, Any]]], rows: tuple[tuple[str, str], ...] = ROWS) -> None:
    """The table: first epoch since launch, as a ratio to the plain script's and to plain Ray Tune's."""
    plain = statistics.median(r["first_epoch_s"] for r in runs["plain"])
    floor = statistics.median(r["first_epoch_s"] for r in runs["ray"])
    header = ["run", "first epoch s", "/ plain", "/ plain Tune", "wall s"]
    lines = []
    for name, kind in rows:
        firsts = [r["first_epoch_s"] for r in runs[kind]]
        walls = [r.get("wall_s", r.get("wall_1", 0.0)) for r in runs[kind]]
        lines.append([name, _spread(firsts), _spread([f / plain for f in firsts], 2) + "x",
                      _spread([f / floor for f in firsts], 2) + "x", _spread(walls)])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    one, eight, tune_only = runs["existing"], runs["eight"], runs["ray"]
    marginal = [((e["wall_s"] - o["wall_s"]) - (e["train_total_s"] - o["train_total_s"])) / 7
                for o, e in zip(one, eight, strict=True)]
    ray_marginal = [((t["wall_8"] - t["wall_1"]) - (t["train_8"] - t["train_1"])) / 7 for t in tune_only]
    print(f"\neach further trial, hpo run:     {_spread(marginal, 2)} s overhead")
    print(f"each further trial, plain Tune:  {_spread(ray_marginal, 2)} s overhead "
          "(same loop, no Optuna/MLflow/checkpoints)")
    for kind in ("existing", "new", "first"):
        print(f"\nstart-up phases of 'hpo run', {kind} store, last round (hpo run --verbose):")
        print("\n".join("  " + phase for phase in runs[kind][-1]["phases"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=512)  # ~2-3 s of training for 10 epochs on one core
    parser.add_argument("--rounds", type=int, default=1, help="repeat every row, interleaved; median (range)")
    parser.add_argument("--baseline", metavar="DIR", help="also time `hpo run` of the checkout in DIR (before/after)")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # the child process of (a)
    parser.add_argument("--ray", action="store_true", help=argparse.SUPPRESS)  # the child process of (b)
    args = parser.parse_args()
    if args.plain:
        print(json.dumps(plain_loop(args.epochs, args.hidden)))
        return
    if args.ray:
        print(json.dumps(ray_tune_loop(args.epochs, args.hidden)))
        return

    print(f"digits MLP (hidden {args.hidden}, 2 layers), adam lr {LR}, batch {BATCH_SIZE}, {args.epochs} epochs; "
          f"{os.cpu_count()} cores, {args.rounds} round(s)", file=sys.stderr)
    rows = ROWS + (BASELINE_ROWS if args.baseline else ())
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for _, kind in rows}
    for _ in range(args.rounds):
        for name, kind in rows:
            print(f"  {name} ...", file=sys.stderr, flush=True)
            runs[kind].append(measure(kind, args.epochs, args.hidden, args.baseline))
    report(runs, rows)


if __name__ == "__main__":
    main()
