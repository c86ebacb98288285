"""``hpo compress``: shrink a sweep's winner and record every variant as a child run of the sweep.

Finds the sweep (by name or run id) or one of its trials in the store, takes the best checkpoint, has
``trainers.compression`` make and measure the variants, logs each one through ``tracker.mlflow_log``
(tags ``hpo.run_kind: compress``, ``hpo.compress.method``, ``hpo.compress.source_run``), logs the fp32
winner as an MLflow Model, and returns the table with the Pareto sets. Every input is checked before
anything is created: a bad request leaves the store untouched.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpo.errors import ConfigError, HpoError, tracking_errors
from tracker import schema
from trainers.compression.settings import BASELINE, METHODS, CompressSettings, SettingsError

__all__ = ["METHODS", "Source", "compress_after_search", "compress_stored", "find_source", "pareto", "render",
           "settings_from_args", "summary"]

SOURCE = "hpo compress"
CHECKPOINT = f"{schema.BEST_CHECKPOINT_DIR}/model.pt"
SPLIT = "validation"
TEST_SPLIT = "test split scored once per variant"  # by measure.variant_metrics, after every choice is made
NO_TEST_SPLIT = "no test split: no test estimate"  # the winner's data has none (own data without one)
MLFLOW_MODEL_PATH = "mlflow_model"
FRONTS = ("latency_batch_1", "latency_large_batch", "size")


@dataclass(frozen=True)
class Source:
    """Where the winner lives: its sweep run, the trial it came from, and how it is judged."""

    parent_run_id: str
    source_run_id: str
    sweep: str
    task: str
    metric: str
    goal: str


def settings_from_args(methods: Sequence[str] | None, sparsities: Sequence[float] | None,
                       **numbers: Any) -> CompressSettings:
    """The request as ``CompressSettings``; flags left out keep their defaults.

    Raises:
        ConfigError: a setting breaks its rule; the message names the flag.
    """
    kwargs: dict[str, Any] = {k: v for k, v in numbers.items() if v is not None}
    if kwargs.get("distill_trials") and methods and "distill" not in ",".join(methods):
        raise ConfigError("--distill-trials tunes the distill method's student; add distill to --methods or "
                          "leave --distill-trials out", source=SOURCE, field="--distill-trials (distill_trials)")
    if methods:
        kwargs["methods"] = tuple(m.strip() for item in methods for m in item.split(",") if m.strip())
    if sparsities:
        kwargs["sparsities"] = tuple(sparsities)
    try:
        return CompressSettings(**kwargs).validated()
    except SettingsError as e:
        flag = "--" + e.field.split("[")[0].replace("_", "-")
        raise ConfigError(str(e).split(": ", 1)[1], source=SOURCE, field=f"{flag} ({e.field})") from None


def find_source(target: str, tracking_uri: str | None) -> tuple[Source, Any]:
    """The sweep and trial ``target`` names, checked to hold a best checkpoint of a built-in task.

    Returns:
        The source and an open ``tracker.queries.Store``.

    Raises:
        ConfigError: no such sweep or run, a trial without a checkpoint, no checkpoint, a custom trainer.
        TrackingError: the store cannot be read.
    """
    from hpo import defaults
    from tracker.queries import RunNotFound, Store
    from trainers.tasks import TASKS

    uri = defaults.tracking_uri(tracking_uri)
    with tracking_errors():
        try:
            store = Store(uri)
            parent = store.find_sweep(target)
            source_run = None
            if parent is None:
                try:
                    run = store.trial(target)
                except RunNotFound:
                    raise ConfigError(f"no sweep named {target!r} and no run with that id in {store.display_uri}",
                                      source=SOURCE, field="NAME|RUN_ID") from None
                kind = schema.run_kind(run.tags)
                if kind == schema.KIND_SWEEP:
                    parent = target
                elif kind == schema.KIND_TRIAL and run.parent_run_id:
                    parent, source_run = run.parent_run_id, target
                else:
                    raise ConfigError(f"run {target} is neither a sweep nor a trial (tag {schema.RUN_KIND}="
                                      f"{kind!r})", source=SOURCE, field="NAME|RUN_ID")
            data = store.sweep(parent)
            artifacts = store.list_artifacts(parent, data.artifact_uri)
        except RunNotFound as e:
            raise ConfigError(str(e), source=SOURCE, field="NAME|RUN_ID") from None
    best = data.tags.get(schema.BEST_RUN_ID, "")
    if source_run is not None and source_run != best:
        raise ConfigError(f"run {source_run} is a trial of sweep {data.name!r} without a checkpoint: only the "
                          f"sweep's best trial (run {best or 'none yet'}) keeps one; compress the sweep or that run",
                          source=SOURCE, field="NAME|RUN_ID")
    if CHECKPOINT not in artifacts:
        raise ConfigError(f"sweep {data.name!r} (run {parent}) has no {CHECKPOINT} artifact: no trial saved a "
                          "checkpoint (did every trial fail?)", source=SOURCE, field="NAME|RUN_ID")
    task = data.tags.get(schema.TASK, "")
    if task not in TASKS:
        raise ConfigError(f"sweep {data.name!r} trained {task!r}; compress rebuilds the models of the built-in "
                          f"tasks only ({', '.join(TASKS)})", source=SOURCE, field="trainer.task")
    return Source(parent, best, data.name, task, data.metric or "val_loss", data.goal or "minimize"), store


def compress_stored(target: str, tracking_uri: str | None, settings: CompressSettings,
                    explicit_methods: bool) -> dict[str, Any]:
    """Compress the winner of ``target`` and log every variant; the JSON document ``--json`` prints.

    Raises:
        ConfigError: bad input (see ``find_source``; a method that does not apply to the architecture).
        TrackingError: the store cannot be read or written.
    """
    source, store = find_source(target, tracking_uri)
    from trainers.compression.pipeline import Winner, compress
    from trainers.compression.settings import check_applicable

    with tempfile.TemporaryDirectory(prefix="hpo-compress-") as tmp:
        local = store.download_artifact(source.parent_run_id, CHECKPOINT, tmp)
        winner = Winner.from_checkpoint(local, source.task, source.metric, source.goal)
        model_name = str(winner.config["model"])
        try:
            methods = check_applicable(settings.methods, model_name, explicit=explicit_methods)
        except SettingsError as e:
            raise ConfigError(str(e).split(": ", 1)[1], source=SOURCE, field="--methods") from None
        recorder = _Recorder(store.tracking_uri, source, winner, settings)
        variants = compress(winner, _with_methods(settings, methods), Path(tmp) / "variants", recorder.log,
                            search=_student_search(source, winner, settings))
        doc = summary(source, model_name, winner.metric, winner.goal, settings, [v.to_dict() for v in variants])
        doc["mlflow_model"] = recorder.model_uri
        for row in doc["variants"]:
            row["run_id"] = recorder.run_ids.get(row["name"])
        recorder.finish(doc)
    return doc


def compress_after_search(config: Any, result: Any, stream: Any) -> dict[str, Any] | None:
    """The sweep file's ``compress:`` block run on the finished sweep ``result`` (an ``hpo.results.SweepResult``
    of ``config``, an ``hpo.config.SweepConfig``); progress and problems go to ``stream``.

    Returns:
        None without a block, or when the sweep was interrupted or has no winner; the ``hpo compress --json``
        document; or ``{"error": message}`` when the stage could not run (the sweep's results stand).
    """
    if config.compress is None:
        return None
    if result.interrupted or result.best is None:
        print(f"compress: skipped, the sweep {'was interrupted' if result.interrupted else 'has no winner'}",
              file=stream, flush=True)
        return None
    print(f"compress: making the variants of trial run {result.best.run_id}'s model (compress: block)", file=stream,
          flush=True)
    settings = config.compress.settings().validated()  # checked when the file loaded
    try:
        return compress_stored(result.parent_run_id, result.tracking_uri, settings, explicit_methods=False)
    except HpoError as e:
        print(f"error: compress: {e}; the sweep's results are stored; run `hpo compress {result.sweep}` to retry",
              file=stream, flush=True)
        return {"error": str(e)}


def _with_methods(settings: CompressSettings, methods: tuple[str, ...]) -> CompressSettings:
    return replace(settings, methods=methods)


def _student_search(source: Source, winner: Any, settings: CompressSettings) -> Any:
    """The distillation sweep's sampler (seeded with the winner's seed), when one is asked for."""
    if settings.distill_trials == 0 or "distill" not in settings.methods:
        return None
    from hpo.distill_search import DistillSearch

    first = {"temperature": settings.temperature, "alpha": settings.alpha}
    return DistillSearch(source.task, settings.distill_trials, int(winner.config.get("seed", 0)), winner.goal, first)


class _Recorder:
    """Logs each measured variant as a child run of the sweep with its figures and files."""

    def __init__(self, tracking_uri: str, source: Source, winner: Any, settings: CompressSettings) -> None:
        from tracker.mlflow_log import open_client

        with tracking_errors():
            self.client = open_client(tracking_uri)
        self.source, self.winner, self.settings = source, winner, settings
        self.run_ids: dict[str, str] = {}
        self.baseline: dict[str, Any] | None = None
        self.model_uri: str | None = None

    def log(self, variant: Any) -> None:
        from tracker.mlflow_log import log_compress_variant

        row = variant.to_dict()
        if self.baseline is None:
            self.baseline = row
        compare = _comparison(row, self.baseline, self.winner.goal)
        metrics = {**{k: v for k, v in row["metrics"].items() if _finite(v)}, **_figures(row), **compare}
        tags = {schema.COMPRESS_METHOD: row["method"], schema.COMPRESS_VARIANT: row["name"],
                schema.COMPRESS_SOURCE_RUN: self.source.source_run_id, schema.COMPRESS_RUNTIME: row["runtime"],
                schema.SWEEP: self.source.sweep, schema.METRIC: self.winner.metric, schema.GOAL: self.winner.goal,
                schema.COMPRESS_SPLIT: SPLIT, schema.COMPRESS_TEST_SPLIT: _test_split(row)}
        if row["note"]:
            tags[schema.COMPRESS_NOTE] = row["note"]
        params = {**row["settings"], "threads": row["threads"], "large_batch": self.settings.large_batch,
                  "repeats": self.settings.repeats, "warmup": self.settings.warmup}
        run_id = log_compress_variant(self.client, self.source.parent_run_id, run_name=f"compress-{row['name']}",
                                      tags=tags, params=params, metrics=metrics, files=variant.files)
        self.run_ids[row["name"]] = run_id
        if row["name"] == BASELINE:
            self.model_uri = self._log_model(run_id)
        for trial in row.get("distill_trials", []):
            self._log_student(run_id, trial, tags, row["settings"])

    def _log_student(self, distill_run_id: str, trial: dict[str, Any], tags: dict[str, str],
                     settings: dict[str, Any]) -> None:
        """One student of the distillation sweep as a child run of the ``distill`` variant's run (a
        grandchild of the sweep: the sweep's own children stay one row per variant)."""
        from tracker.mlflow_log import log_compress_variant

        number = int(trial["number"])
        student_tags = {**{k: v for k, v in tags.items() if k != schema.COMPRESS_NOTE},
                        schema.COMPRESS_VARIANT: f"distill_trial_{number}",
                        schema.COMPRESS_DISTILL_TRIAL: str(number),
                        schema.COMPRESS_SELECTED: "true" if trial["selected"] else "false"}
        params: dict[str, Any] = {"temperature": trial["temperature"], "alpha": trial["alpha"],
                                  **{k: settings[k] for k in ("epochs", "hidden", "layers") if k in settings}}
        log_compress_variant(self.client, distill_run_id, run_name=f"compress-distill-trial-{number}",
                             tags=student_tags, params=params, metrics={self.winner.metric: trial["metric"]}, files=[])

    def _log_model(self, run_id: str) -> str:
        import torch

        from tracker.mlflow_log import log_pytorch_model

        example = self.winner.data.x_val[:5]
        with torch.inference_mode():
            output = self.winner.model.eval()(example).numpy()
        return log_pytorch_model(self.client, run_id, self.winner.model, example.numpy(), output, MLFLOW_MODEL_PATH)

    def finish(self, doc: dict[str, Any]) -> None:
        from tracker.mlflow_log import log_json_artifact, set_run_tags

        for row in doc["variants"]:
            if row["pareto"] and row["name"] in self.run_ids:
                set_run_tags(self.client, self.run_ids[row["name"]], {schema.COMPRESS_PARETO: ",".join(row["pareto"])})
        log_json_artifact(self.client, self.source.parent_run_id, doc, schema.COMPRESS_SUMMARY_ARTIFACT)


# -- the table: plain data, no torch ------------------------------------------------------------------
def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _figures(row: dict[str, Any]) -> dict[str, float]:
    """A variant's size and timing as flat MLflow metric names."""
    out: dict[str, float] = {"params": row["params"], "nonzero_params": row["nonzero_params"],
                             "size_bytes": row["size_bytes"], "threads": row["threads"]}
    for key, timing in row["latency"].items():
        out[f"latency_{key}_median_ms"] = timing["median_ms"]
        out[f"latency_{key}_p90_ms"] = timing["p90_ms"]
        out[f"throughput_{key}"] = timing["throughput"]
    if row["onnx_max_abs_diff"] is not None:
        out["onnx_max_abs_diff"] = row["onnx_max_abs_diff"]
    return out


def _comparison(row: dict[str, Any], baseline: dict[str, Any], goal: str) -> dict[str, float]:
    """Metric change, size ratio and speed-ups of ``row`` against the fp32 baseline (speed-up > 1: faster)."""
    out = {"delta_vs_fp32": row["metric"] - baseline["metric"],
           "size_ratio": row["size_bytes"] / baseline["size_bytes"]}
    for key, timing in row["latency"].items():
        out[f"speedup_{key}"] = baseline["latency"][key]["median_ms"] / timing["median_ms"]
    return out


def pareto(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points no other point beats: higher first value (better metric), lower second (cost).

    A point is dominated when another is at least as good on both and strictly better on one.
    """
    front = []
    for name, good, cost in points:
        dominated = any(g >= good and c <= cost and (g > good or c < cost) for n, g, c in points if n != name)
        if not dominated:
            front.append(name)
    return front


def summary(source: Source, model: str, metric: str, goal: str, settings: CompressSettings,
            variants: list[dict[str, Any]]) -> dict[str, Any]:
    """The table ``hpo compress`` prints: each variant against fp32, and the Pareto sets."""
    baseline = variants[0]
    sign = 1.0 if goal == "maximize" else -1.0
    large = f"batch_{settings.large_batch}"
    costs = {"latency_batch_1": lambda r: r["latency"]["batch_1"]["median_ms"],
             "latency_large_batch": lambda r: r["latency"][large]["median_ms"],
             "size": lambda r: float(r["size_bytes"])}
    fronts = {name: pareto([(r["name"], sign * r["metric"], cost(r)) for r in variants])
              for name, cost in costs.items()}
    rows = []
    for row in variants:
        rows.append({**row, **_comparison(row, baseline, goal),
                     "pareto": [name for name in FRONTS if row["name"] in fronts[name]]})
    return {"sweep": source.sweep, "parent_run_id": source.parent_run_id, "source_run_id": source.source_run_id,
            "task": source.task, "model": model, "metric": metric, "goal": goal, "split": SPLIT,
            "test_split": _test_split(baseline), "threads": settings.threads, "large_batch": settings.large_batch,
            "repeats": settings.repeats, "warmup": settings.warmup, "variants": rows, "pareto": fronts}


def render(doc: dict[str, Any]) -> str:
    """The table, the batch-1 slow-downs said plainly, the Pareto sets and where the fp32 Model is."""
    n = doc["large_batch"]
    large = f"batch_{n}"
    metric = doc["metric"]
    test = schema.test_metric(metric)
    header = (f"{'variant':<26} {'runtime':<11} {metric:>12} {'Δ vs fp32':>10} {test:>13} {'size':>10} {'size×':>6} "
              f"{'b1 ms (p90)':>16} {'speed-up b1':>11} {f'b{n} ms (p90)':>17} "
              f"{f'speed-up b{n}':>13} {'per s':>9}")
    lines = [
        f"compress {doc['sweep']} (run {doc['parent_run_id']}): {doc['model']} of trial run {doc['source_run_id']}, "
        f"task {doc['task']}",
        f"{metric} on the {doc['split']} split ({doc['test_split']}); CPU, {doc['threads']} thread(s), "
        f"median (p90) of {doc['repeats']} timed calls after {doc['warmup']} warm-up",
        header,
    ]
    for r in doc["variants"]:
        b1, bl = r["latency"]["batch_1"], r["latency"][large]
        lines.append(
            f"{r['name']:<26} {r['runtime']:<11} {r['metric']:>12.4f} {r['delta_vs_fp32']:>+10.4f} "
            f"{_maybe(r['metrics'].get(test)):>13} "
            f"{_size(r['size_bytes']):>10} {r['size_ratio']:>6.2f} "
            f"{b1['median_ms']:>7.3f} ({b1['p90_ms']:>6.3f}) {r['speedup_batch_1']:>10.2f}× "
            f"{bl['median_ms']:>8.3f} ({bl['p90_ms']:>6.3f}) {r[f'speedup_{large}']:>12.2f}× {bl['throughput']:>9.0f}"
        )
    slower = [f"{r['name']} ({r['speedup_batch_1']:.2f}×)" for r in doc["variants"][1:] if r["speedup_batch_1"] < 1]
    if slower:
        lines.append(f"slower than fp32 at batch 1: {', '.join(slower)}")
    for r in doc["variants"]:
        if r["onnx_max_abs_diff"] is not None:
            lines.append(f"ONNX {r['name']}: max |ONNX Runtime - PyTorch| = {r['onnx_max_abs_diff']:.2e} ({r['note']})")
    names = {"latency_batch_1": "latency at batch 1", "latency_large_batch": f"latency at batch {doc['large_batch']}",
             "size": "size"}
    for key, front in doc["pareto"].items():
        lines.append(f"Pareto set, {metric} vs {names[key]}: {', '.join(front)}")
    if doc.get("mlflow_model"):
        lines.append(f"fp32 MLflow Model: {doc['mlflow_model']}  (mlflow models serve -m {doc['mlflow_model']} "
                     "--env-manager local)")
    return "\n".join(lines)


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _test_split(row: dict[str, Any]) -> str:
    """What a variant says of the test split: scored (``test_*`` among its metrics) or absent."""
    return TEST_SPLIT if any(k.startswith("test_") for k in row["metrics"]) else NO_TEST_SPLIT


def _size(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"

