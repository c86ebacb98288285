"""How the driver's cost grows with the number of trials: sweeps of 100, 300 and 1,000 trivial trials.

Each size runs in a fresh process (``hpo.runner.run_sweep``, bayes (TPE) search with ASHA, a trainer
that reports ``--epochs`` epochs of nothing, ``--concurrent`` trials at a time, a fresh ``HPO_HOME``).
The driver's own methods are timed where they run, summed per component:

- searcher: ``PruningOptunaSearch`` (Optuna's TPE suggestion and the results it is told);
- scheduler: ASHA's decisions on every result;
- tracker: ``TrialTracker``'s callbacks, which append every write to the journal (diagnosis apart);
- diagnosis: each trial's verdict when it ends (``hpo.diagnose.diagnose_record``);
- progress: the live progress line;
- replay: the journal's replay thread writing to MLflow (concurrent with the rest, timed apart);
- Tune and the rest: the driver's wall time from the first trial's start to the end, less the above
  (Ray Tune's controller loop, actor reuse, Ray itself).

Per trial = the component's seconds / trials. Memory: the driver's resident set when the sweep ends
less when its first trial started, per trial. The growth column divides each per-trial cost by the smallest
sweep's: an algorithm linear in the trials seen (TPE) grows, a constant per-trial cost stays ~1.

Run:  nice -n 10 .venv/bin/python bench/scale.py [--sizes 100 300 1000] [--epochs 3] [--concurrent 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAINER = '''\
def train(config, report):
    for epoch in range(1, config["epochs"] + 1):
        report({"epoch": epoch, "val_loss": (config["lr"] - 0.01) ** 2 + 1.0 / epoch})
'''
SWEEP = """\
name: scale{n}
method: bayes
metric: {{name: val_loss, goal: minimize}}
budget: {{trials: {n}, max_concurrent: {concurrent}}}
seed: 0
early_stop: {{type: asha, grace_epochs: 1}}
trainer: {{function: "nothing:train", epochs: {epochs}, reports: [val_loss]}}
parameters:
  lr: {{distribution: log_uniform, min: 0.0001, max: 0.1}}
  width: {{values: [16, 32, 64]}}
  dropout: {{distribution: uniform, min: 0.0, max: 0.5}}
"""
COMPONENTS = ("searcher", "scheduler", "tracker", "diagnosis", "progress")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _instrument(spent: dict[str, float], marks: dict[str, float]) -> None:
    """Wrap the driver's component methods so their wall time is summed per component."""
    import hpo.callbacks as callbacks
    import hpo.diagnose as diagnose
    import hpo.search as search
    import tracker.replay as replay

    def timed(owner: Any, name: str, component: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[component] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    for name in ("suggest", "on_trial_result", "on_trial_complete"):
        timed(search.PruningOptunaSearch, name, "searcher")
    for name in ("on_trial_add", "on_trial_result", "on_trial_complete", "choose_trial_to_run"):
        timed(search.RecordingASHA, name, "scheduler")
    for name in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error"):
        timed(callbacks.TrialTracker, name, "tracker")
    for name in ("on_step_end", "on_trial_complete", "on_experiment_end"):
        timed(callbacks.Progress, name, "progress")
    timed(diagnose, "diagnose_record", "diagnosis")
    timed(replay.Replayer, "replay", "replay")
    original_start = callbacks.TrialTracker.on_trial_start

    def first_start(self: Any, *args: Any, **kwargs: Any) -> Any:
        if "first_trial" not in marks:
            marks["first_trial"], marks["rss_first_mb"] = time.perf_counter(), _rss_mb()
        return original_start(self, *args, **kwargs)

    callbacks.TrialTracker.on_trial_start = first_start


def one(trials: int, epochs: int, concurrent: int) -> dict[str, Any]:
    """The child process: one sweep of ``trials``; returns its timings and memory."""
    from hpo.loading import load_sweep
    from hpo.runner import run_sweep

    folder = Path(tempfile.mkdtemp(prefix=f"hpo_scale_{trials}_"))
    (folder / "nothing.py").write_text(TRAINER, encoding="utf-8")
    os.environ["HPO_HOME"] = str(folder / ".hpo")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    (folder / "scale.yaml").write_text(SWEEP.format(n=trials, epochs=epochs, concurrent=concurrent), encoding="utf-8")
    config, text = load_sweep(folder / "scale.yaml")
    spent: dict[str, float] = defaultdict(float)
    marks: dict[str, float] = {}
    _instrument(spent, marks)
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        result = run_sweep(config, text, progress_stream=quiet)
    ended = time.perf_counter()
    spent["tracker"] -= spent["diagnosis"]  # diagnosis runs inside the tracker's on_trial_complete
    finished = sum(r.status == "FINISHED" for r in result.trials)
    return {
        "trials": trials, "finished": finished, "wall_s": ended - started,
        "trials_s": ended - marks.get("first_trial", started), "spent": dict(spent),
        "rss_mb": _rss_mb() - marks.get("rss_first_mb", 0.0), "rss_end_mb": _rss_mb(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Per-trial milliseconds by component and size, with the growth over the smallest size."""
    base = rows[0]
    lines = []

    def per_trial(row: dict[str, Any], part: str) -> float:
        if part == "Tune and the rest":
            inside = sum(row["spent"].get(c, 0.0) for c in COMPONENTS)
            return (row["trials_s"] - inside) / row["trials"] * 1000
        if part == "total (first trial start to end)":
            return row["trials_s"] / row["trials"] * 1000
        if part == "replay thread (concurrent)":
            return row["spent"].get("replay", 0.0) / row["trials"] * 1000
        return row["spent"].get(part, 0.0) / row["trials"] * 1000

    parts = [*COMPONENTS, "Tune and the rest", "total (first trial start to end)", "replay thread (concurrent)"]
    header = "| per trial (ms) | " + " | ".join(f"{r['trials']} trials" for r in rows)
    header += f" | growth {rows[-1]['trials']} / {base['trials']} |"
    lines += [header, "|---" * (len(rows) + 2) + "|"]
    for part in parts:
        values = [per_trial(r, part) for r in rows]
        growth = values[-1] / values[0] if values[0] > 0 else float("nan")
        lines.append(f"| {part} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {growth:.2f}x |")
    mem = [r["rss_mb"] / r["trials"] * 1024 for r in rows]
    lines.append("| driver memory growth (KiB per trial) | " + " | ".join(f"{m:.0f}" for m in mem)
                 + f" | {mem[-1] / mem[0] if mem[0] > 0 else float('nan'):.2f}x |")
    lines.append("| wall s (whole sweep, with start-up) | " + " | ".join(f"{r['wall_s']:.1f}" for r in rows) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process of one size
    parser.add_argument("--out", type=Path, help="also write the table and raw figures here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.epochs, args.concurrent)))
        return
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    rows = []
    for size in args.sizes:
        print(f"  {size} trials ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--epochs", str(args.epochs), "--concurrent",
             str(args.concurrent)], capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the {size}-trial sweep exited {done.returncode}:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"    {rows[-1]['finished']} finished in {rows[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n\n" + json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
