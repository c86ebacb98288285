"""How fast the sweep page loads a big sweep: 1,000 trials x 100 epochs x 6 curves (600k points), plus
the 12 training signals per epoch the built-in trainer logs by default (1.2M more).

Fills a fresh SQLite MLflow store (schema made by MLflow, rows bulk-inserted with SQLAlchemy: a
bench setup, 1.8M points through ``log_batch`` would take many minutes), then times

1. ``Store.sweep()``: the trials frame and every metric history (what ``hpo diagnose`` reads; the first
   call in a process also pays one-off import and warm-up costs, so it is timed separately);
   ``Store.sweep(skip=("signals/",))``: the same without the signals' histories; and what the sweep page
   reads, ``Store.sweep(skip=("signals/",), first_curves=True)``: the curves of the trials it draws first
   only (the others are read when picked: ``Store.histories``, timed for three);
2. the sweep page's figures built from it (leaderboard, best-so-far, verdicts, parallel
   coordinates, learning curves, slice) and, separately, Optuna's fANOVA importance;
3. the whole sweep page script under Streamlit's AppTest, in a process of its own (its modules imported
   first, as a dashboard's are after its first page), cold cache and cached rerun (parameter importance
   and the contour of a sweep this size are computed when asked: timed apart, each with its button
   pressed), then 5 reruns back to back;
4. the same curves read the usual way, ``MlflowClient.get_metric_history`` per run per key;
5. with ``--sweeps N`` (default 200): a second store of N sweeps (20 trials x 10 epochs each), the
   sweeps list (``Store.list_sweeps()``) and the sweeps page under AppTest, cold and rerun.

Usage: python bench/dashboard_scale.py [--trials 1000] [--epochs 100] [--client-runs N] [--keep DIR] [--sweeps 200]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from tracker import schema  # noqa: E402
from trainers import signal_names as names  # noqa: E402

KEYS = schema.EPOCH_METRICS
# what the built-in trainer also logs every epoch by default (an MLP with ReLUs): 12 training signals
SIGNALS = (names.GRAD_NORM, names.GRAD_NORM_MAX, names.NONFINITE_GRAD_STEPS, names.NONFINITE_WEIGHTS,
           names.WEIGHT_NORM, names.DEAD_RELU, *(names.grad_norm_of(g) for g in names.GROUPS),
           *(names.update_ratio_of(g) for g in names.GROUPS))  # fmt: skip
VERDICTS = ["good_fit", "overfitting", "underfitting", "diverged"]


def fill(uri: str, trials: int, epochs: int, seed: int = 0, name: str = "scale", signals: bool = True) -> str:
    """Create the schema through MLflow, then bulk-insert one sweep (with the training signals the built-in
    trainer logs, unless ``signals`` is false); returns the parent run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment(name, artifact_location=str(Path(uri[len("sqlite:///") :]).parent / "art"))
    parent = client.create_run(exp, run_name=name, tags={
        **schema.kind_tags(schema.KIND_SWEEP), schema.SWEEP: name, schema.METHOD: "bayes", schema.SAMPLER: "tpe",
        schema.METRIC: "val_accuracy", schema.GOAL: "maximize", schema.SWEEP_STATE: "finished",
        schema.TRIALS_TOTAL: str(trials)}).info.run_id  # fmt: skip
    engine = sa.create_engine(uri)
    meta = sa.MetaData()
    meta.reflect(engine, only=["runs", "tags", "params", "metrics", "latest_metrics"])
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    runs, tags, params, metrics, latest = [], [], [], [], []
    for n in range(trials):
        run_id = uuid.uuid4().hex
        lr, wd, bs = 10 ** rng.uniform(-5, -1), 10 ** rng.uniform(-6, -2), rng.choice([32, 64, 128, 256])
        opt, drop = rng.choice(["adam", "sgd", "adamw"]), rng.uniform(0, 0.5)
        start = now - (trials - n) * 60_000
        runs.append({"run_uuid": run_id, "name": f"trial-{n}", "source_type": "LOCAL", "source_name": "",
                     "entry_point_name": "", "user_id": "bench", "status": "FINISHED", "start_time": start,
                     "end_time": start + 55_000, "source_version": "", "lifecycle_stage": "active",
                     "artifact_uri": f"/tmp/none/{run_id}", "experiment_id": int(exp)})  # fmt: skip
        verdict = rng.choice(VERDICTS)
        for key, value in {schema.PARENT_RUN_ID: parent, **schema.kind_tags(schema.KIND_TRIAL),
                           schema.TRIAL_NUMBER: str(n), schema.TRIAL_ID: f"t{n:05d}",
                           schema.DIAGNOSIS: verdict, schema.DIAGNOSIS_CONFIDENCE: "0.7"}.items():  # fmt: skip
            tags.append({"key": key, "value": value, "run_uuid": run_id})
        for key, value in {"lr": lr, "weight_decay": wd, "batch_size": bs, "optimizer": opt, "dropout": drop}.items():
            params.append({"key": key, "value": str(value), "run_uuid": run_id})
        quality = 1 - abs(math.log10(lr) + 3) / 4
        best = 0.0
        for epoch in range(1, epochs + 1):
            train = 2.3 * math.exp(-epoch * quality / 15) + 0.05
            val = train + 0.002 * epoch * (verdict == "overfitting") + rng.gauss(0, 0.01)
            values = {"train_loss": train, "val_loss": val, "train_accuracy": 1 - train / 2.5,
                      "val_accuracy": 1 - val / 2.5, "lr": lr, "epoch_seconds": 0.5}  # fmt: skip
            if signals:
                values.update({key: rng.uniform(0, 1) for key in SIGNALS})
            best = max(best, values["val_accuracy"])
            for key, value in values.items():
                metrics.append({"key": key, "value": value, "timestamp": start + epoch * 500, "step": epoch,
                                "is_nan": False, "run_uuid": run_id})  # fmt: skip
                if epoch == epochs:
                    latest.append({"key": key, "value": value, "timestamp": start + epoch * 500, "step": epoch,
                                   "is_nan": False, "run_uuid": run_id})  # fmt: skip
        for key, value in {"best_val_accuracy": best, "final_val_accuracy": values["val_accuracy"],
                           "epochs_run": epochs}.items():  # fmt: skip
            row = {"key": key, "value": value, "timestamp": start + 55_000, "step": 0, "is_nan": False,
                   "run_uuid": run_id}  # fmt: skip
            metrics.append(row)
            latest.append(dict(row))
    with engine.begin() as conn:
        for table, rows in (("runs", runs), ("tags", tags), ("params", params), ("metrics", metrics),
                            ("latest_metrics", latest)):  # fmt: skip
            for i in range(0, len(rows), 50_000):
                conn.execute(meta.tables[table].insert(), rows[i : i + 50_000])
    client.set_terminated(parent)
    return parent


def timed(label: str, fn, results: dict[str, float]):
    start = time.perf_counter()
    out = fn()
    results[label] = time.perf_counter() - start
    print(f"  {label:<52} {results[label]:8.3f} s", flush=True)
    return out


def page_figures(data) -> list:
    """What the sweep page draws, from the same helpers the page calls."""
    from dashboard import _analysis, _charts

    trials = _analysis.fill_verdicts(data)
    ranked = trials.sort_values("best", ascending=False)
    top = list(ranked["run_id"][:3])
    labels = {r: f"trial {n}" for r, n in zip(trials["run_id"], trials["trial_number"], strict=True)}
    figs = [
        _charts.best_so_far(trials, "val_accuracy", True),
        _charts.verdict_distribution(trials["verdict"]),
        _charts.parallel_coordinates(trials, data.param_names, "val_accuracy", True),
        _charts.learning_curves(data.histories, top, labels, "loss"),
        _charts.slice_plot(trials, data.param_names[0], "val_accuracy"),
    ]
    for fig in figs:
        fig.to_json()  # what st.plotly_chart sends to the browser
    return figs


def client_reads(uri: str, run_ids: list[str]) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    points = 0
    for run_id in run_ids:
        for key in KEYS:
            points += len(client.get_metric_history(run_id, key))
    return points


def apptest(uri: str, parent: str, results: dict[str, float]) -> None:
    import os

    from streamlit.testing.v1 import AppTest

    os.environ["HPO_TRACKING_URI"] = uri
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "sweep.py"), default_timeout=300)
    at.query_params["run"] = parent
    timed("sweep page under AppTest, cold cache", at.run, results)
    if at.exception:
        raise SystemExit(f"the page raised: {at.exception[0].value}")
    timed("sweep page under AppTest, rerun (cached)", at.run, results)
    buttons = [b for b in at.button if b.key == "importance_compute"]
    if buttons:
        buttons[0].click()
        timed("sweep page, 'Compute parameter importance' pressed", at.run, results)
        timed("sweep page, rerun with importance (cached)", at.run, results)
        if not any(t.label == "Importance" for t in at.tabs):
            raise SystemExit("no importance tab")
    buttons = [b for b in at.button if b.key == "contour_compute"]
    if buttons:
        buttons[0].click()
        timed("sweep page, 'Draw the contour' pressed", at.run, results)
        timed("sweep page, rerun with the contour (cached)", at.run, results)
    # reruns back to back (widget clicks come seconds apart; a rerun past the 2 s fingerprint TTL asks the
    # store again), with whatever the buttons added on the page
    reruns = timed("sweep page, 5 reruns back to back (cached)", lambda: [at.run() for _ in range(5)], results)
    print(f"    {results['sweep page, 5 reruns back to back (cached)'] / len(reruns):.3f} s per rerun")


def many_sweeps(folder: Path, sweeps: int, results: dict[str, float]) -> None:
    """A store of ``sweeps`` sweeps: the sweeps list's read and page."""
    import os

    from streamlit.testing.v1 import AppTest

    from tracker.queries import Store

    uri = f"sqlite:///{folder / 'many.db'}"
    if not (folder / "many.db").exists():
        timed(f"fill {sweeps} sweeps x 20 trials x 10 epochs (bench setup)",
              lambda: [fill(uri, 20, 10, seed=i, name=f"sweep-{i:03d}") for i in range(sweeps)], results)
    timed(f"Store.list_sweeps(), {sweeps} sweeps, first call", lambda: Store(uri).list_sweeps(), results)
    listed = timed(f"Store.list_sweeps(), {sweeps} sweeps", lambda: Store(uri).list_sweeps(), results)
    print(f"    {len(listed)} sweeps listed")
    os.environ["HPO_TRACKING_URI"] = uri
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "sweeps.py"), default_timeout=300)
    timed(f"sweeps page under AppTest, {sweeps} sweeps, cold cache", at.run, results)
    if at.exception:
        raise SystemExit(f"the page raised: {at.exception[0].value}")
    timed(f"sweeps page under AppTest, {sweeps} sweeps, rerun", at.run, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--client-runs", type=int, default=None, help="time MlflowClient on N runs, extrapolate")
    parser.add_argument("--keep", type=Path, default=None, help="build the store in DIR and keep it")
    parser.add_argument("--sweeps", type=int, default=200, help="sweeps in the sweeps-list store (0: skip)")
    parser.add_argument("--page-only", nargs=2, metavar=("URI", "PARENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.page_only:  # the sweep page alone, in a process that holds nothing else (as the dashboard's does)
        import adbc_driver_sqlite.dbapi  # noqa: F401 -- what the page imports, as a dashboard has after its first page
        import plotly.graph_objects  # noqa: F401

        from dashboard import _analysis, _charts, _data  # noqa: F401

        apptest(*args.page_only, {})
        return
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="hpo-dashboard-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    results: dict[str, float] = {}
    print(f"store {uri}: {args.trials} trials x {args.epochs} epochs x {len(KEYS)} curves")
    if (folder / "mlflow.db").exists():  # --keep of an earlier run: the same store, filled once
        from tracker.queries import Store

        parent = Store(uri).find_sweep("scale")
    else:
        parent = timed("fill (bench setup)", lambda: fill(uri, args.trials, args.epochs), results)

    from tracker.queries import Store

    store = Store(uri)
    curves = "Store.sweep(skip=signals/): every trial's curves"
    page = "Store.sweep(skip=signals/, first_curves=True): the page's read"
    timed("Store.sweep(), first call in the process", lambda: store.sweep(parent), results)
    whole = timed("Store.sweep(): trials + all histories", lambda: store.sweep(parent), results)
    print(f"    {len(whole.trials)} trials, {len(whole.histories):,} history points (hpo diagnose reads these)")
    data = timed(curves, lambda: store.sweep(parent, skip=(names.PREFIX,)), results)
    print(f"    {len(data.trials)} trials, {len(data.histories):,} history points (the training signals left out)")
    first = timed(page, lambda: store.sweep(parent, skip=(names.PREFIX,), first_curves=True), results)
    print(f"    {len(first.trials)} trials, {len(first.histories):,} history points "
          f"(the curves of {len(first.curves_of)} trials; the others when picked)")
    later = [r for r in first.trials["run_id"] if r not in first.curves_of][:3]
    timed("Store.histories(): 3 more trials' curves, picked later",
          lambda: store.histories(later, skip=(names.PREFIX,)), results)
    timed("sweep page figures (5 plotly figures, serialised)", lambda: page_figures(first), results)
    load_and_figures = results[page] + results["sweep page figures (5 plotly figures, serialised)"]
    from dashboard import _analysis

    def importance():
        study, _ = _analysis.build_study(data.trials, True)
        return _analysis.importances(study)

    timed("parameter importance (fANOVA, cached per sweep)", importance, results)
    # in a fresh process: this one holds every history of the sweep and a study of its own, which a
    # dashboard's process does not (the page's reruns measured 2x slower in here)
    import subprocess

    subprocess.run([sys.executable, __file__, "--page-only", uri, parent], check=True)

    ids = data.trials["run_id"].tolist()
    sample = ids[: args.client_runs] if args.client_runs else ids
    timed(f"MlflowClient.get_metric_history x {len(sample)} runs x {len(KEYS)} keys",
          lambda: client_reads(uri, sample), results)  # fmt: skip
    client_s = results[f"MlflowClient.get_metric_history x {len(sample)} runs x {len(KEYS)} keys"]
    client_s *= len(ids) / len(sample)
    bulk_s = results[curves]
    print()
    print(f"sweep page data + figures: {load_and_figures:.2f} s (target < 2 s)")
    print(f"curves, bulk Store.sweep(skip=signals/): {bulk_s:8.2f} s")
    extrapolated = " (extrapolated)" if len(sample) < len(ids) else ""
    print(f"curves, MlflowClient per run and key:    {client_s:8.2f} s{extrapolated}")
    print(f"ratio: {client_s / bulk_s:.0f}x")
    if args.sweeps:
        print()
        many_sweeps(folder, args.sweeps, results)


if __name__ == "__main__":
    main()
