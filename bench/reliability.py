"""Kill/resume reliability: N kill -9 cycles of one sweep at seeded random moments, then the count.

Runs ``hpo run`` of a small digits sweep as a real process group, kills it with SIGKILL when the store
holds a randomly drawn number of ended trials, runs it again (which resumes it), and so on; the last run
finishes the sweep. Then it reads the store and prints:

- trials lost (budget minus distinct trial numbers) and duplicated (numbers with more than one
  FINISHED run), trials re-run (runs tagged ``hpo.replaces``);
- points lost / duplicated: per-epoch points of the final trials against the epochs they ran (a re-run
  that continued a killed trial holds the epochs its killed run(s) had not logged: counted together);
- what a resume costs: seconds from starting ``hpo run`` to its "resuming sweep" line (reading the
  store, rebuilding the search), and to the first new trial run in the store, against a fresh start.

    python bench/reliability.py --cycles 3 --trials 8 --seed 0
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SWEEP = """\
name: reliability
method: bayes
metric: {{name: val_accuracy, goal: maximize}}
budget: {{trials: {trials}, max_concurrent: 2}}
seed: {seed}
trainer: {{task: digits, epochs: {epochs}, options: {{hidden: 16, train_fraction: 0.3}}}}
parameters:
  lr: {{min: 0.001, max: 0.3, distribution: log_uniform}}
  optimizer: {{values: [sgd, adam]}}
"""


_CLIENTS: dict[Path, Any] = {}


def _client(home: Path) -> Any:
    from mlflow.tracking import MlflowClient

    if home not in _CLIENTS:  # one client per store: creating one costs a schema check
        _CLIENTS[home] = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    return _CLIENTS[home]


def _trials(home: Path) -> list[Any]:
    from tracker import schema

    if not (home / "mlflow.db").exists():
        return []
    try:
        mlflow = _client(home)
        ids = [e.experiment_id for e in mlflow.search_experiments()]
        if not ids:
            return []
        return list(mlflow.search_runs(ids, filter_string=f"tags.`{schema.RUN_KIND}` = 'trial'", max_results=1000))
    except Exception:  # noqa: BLE001 - the store may be mid-creation
        return []


def _ended(home: Path) -> int:
    return sum(r.info.status in ("FINISHED", "FAILED") or r.data.tags.get("hpo.early_stopped") == "true"
               for r in _trials(home))


def _run(folder: Path, env: dict[str, str], kill_at: int | None) -> tuple[float | None, float | None, bool]:
    """One ``hpo run``: (seconds to the resume line, seconds to its first new trial run, killed)."""
    home = Path(env["HPO_HOME"])
    before = {r.info.run_id for r in _trials(home)}
    log = folder / "stderr.txt"
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "hpo.cli", "run", "sweep.yaml"], cwd=folder, env=env,
                                   start_new_session=True, stderr=stderr, stdout=subprocess.DEVNULL)
    resume_s = first_s = None
    while process.poll() is None:
        if resume_s is None and "resuming sweep" in log.read_text(encoding="utf-8"):
            resume_s = time.monotonic() - started
        if first_s is None and {r.info.run_id for r in _trials(home)} - before:
            first_s = time.monotonic() - started
        if kill_at is not None and _ended(home) >= kill_at:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return resume_s, first_s, True
        time.sleep(0.1)
    return resume_s, first_s, False


def _count(home: Path, budget: int) -> dict[str, int]:
    from tracker import schema

    mlflow = _client(home)
    trials = _trials(home)
    current = [t for t in trials if schema.REPLACED_BY not in t.data.tags]
    numbers = [int(t.data.tags[schema.TRIAL_NUMBER]) for t in current]
    finished = [int(t.data.tags[schema.TRIAL_NUMBER]) for t in trials if t.info.status == "FINISHED"]
    by_id = {t.info.run_id: t for t in trials}
    lost_points = dup_points = 0
    for t in current:
        epochs = int(t.data.metrics.get("epochs_run", 0))
        chain = [t]
        while chain[-1].data.tags.get(schema.REPLACES) in by_id:
            chain.append(by_id[chain[-1].data.tags[schema.REPLACES]])
        for key in ("val_accuracy", "val_loss", "train_loss"):
            steps = [m.step for run in chain for m in mlflow.get_metric_history(run.info.run_id, key)]
            lost_points += len(set(range(1, epochs + 1)) - set(steps))
            dup_points += len(steps) - len(set(steps))
    return {
        "trials_lost": budget - len(set(numbers)),
        "trials_duplicated": len(finished) - len(set(finished)),
        "trials_rerun": sum(schema.REPLACES in t.data.tags for t in trials),
        "left_running": sum(t.info.status == "RUNNING" for t in trials),
        "points_lost": lost_points,
        "points_duplicated": dup_points,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3, help="kill/resume cycles")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="hpo-reliability-"))
    (folder / "sweep.yaml").write_text(SWEEP.format(trials=args.trials, epochs=args.epochs, seed=args.seed))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["HPO_HOME"] = str(folder / "hpo_home")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    ended = 0
    resume_costs, firsts = [], []
    killed = True
    for cycle in range(args.cycles):
        # leave at least two trials to go, so the kill lands before the sweep ends (2 run at once)
        kill_at = rng.randint(ended + 1, args.trials - 2) if ended + 1 <= args.trials - 2 else None
        resume_s, first_s, killed = _run(folder, env, kill_at)
        if cycle > 0 and resume_s is not None:
            resume_costs.append(resume_s)
        firsts.append(first_s)
        ended = _ended(Path(env["HPO_HOME"]))
        print(f"run {cycle + 1}: killed -9 at {ended} ended trials" if killed else f"run {cycle + 1}: ran to the end")
        if not killed:
            break
    if killed:  # the last resume runs the sweep to its end
        resume_s, first_s, _ = _run(folder, env, None)
        if resume_s is not None:
            resume_costs.append(resume_s)
        firsts.append(first_s)
    counts = _count(Path(env["HPO_HOME"]), args.trials)
    for key, value in counts.items():
        print(f"{key:>20}: {value}")
    if resume_costs:
        print(f"{'resume line after':>20}: {min(resume_costs):.1f}-{max(resume_costs):.1f} s (store read + plan)")
    shown = ", ".join(f"{f:.1f}" if f is not None else "-" for f in firsts)
    print(f"{'first new trial':>20}: {shown} s after `hpo run` started (first: the fresh start; then resumes)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
