"""The only module that writes to MLflow: a parent run per sweep, a child run per trial, batched metrics.

Writes happen on the driver only, so concurrent trials never contend for a SQLite file and remote
trials need no tracking credentials. Per-call logging costs milliseconds (1,000 ``log_metric`` calls
took 2.4 s on SQLite here, one ``log_batch`` of 1,000 points 0.045 s), so epoch metrics are buffered
and written with ``log_batch`` in chunks within MLflow's limits.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker import schema
from tracker.errors import StoreUnavailable
from tracker.uri import is_server_uri, probe_server, redact, sqlite_path

log = logging.getLogger(__name__)

# MLflow's limits (mlflow.utils.validation): per log_batch call, and on value lengths.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
FLUSH_POINTS = 500  # flush when this many points wait ...
FLUSH_SECONDS = 2.0  # ... or this long after the last flush

RunStatus = str  # "FINISHED" | "FAILED" | "KILLED" (MLflow's RunStatus names)

# MLflow 3's UI opens experiments on its GenAI overview (traces, an assistant) unless told they hold
# model training. Two switches: the experiment tag below (the UI's CUSTOM_MODEL_DEVELOPMENT; read when
# the UI's GenAI/Model-training toggle is off), and the UI's own toggle, which 3.17 turns on and reads
# from the link's ``workflowType`` (else the browser's last choice, else GenAI): our links set both.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
UI_VIEW = "workflowType=machine_learning"


def ui_run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """The page of run ``run_id`` in the MLflow UI served at ``ui_url``, in its model-training view."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{UI_VIEW}"


def ui_experiment_url(ui_url: str, experiment_id: str) -> str:
    """The runs table of an experiment in the MLflow UI served at ``ui_url`` (nested trials under sweeps)."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}?{UI_VIEW}"


def open_client(tracking_uri: str, artifact_root: Path | None = None) -> Any:
    """An ``MlflowClient`` on ``tracking_uri``; a SQLite store is created, migrated and set to WAL once.

    Creating the schema here, on the driver, before trials start avoids the migration race that several
    processes hit on a fresh database; WAL lets the dashboard read while the sweep writes.

    Raises:
        StoreUnavailable: the store cannot be reached.
    """
    if is_server_uri(tracking_uri):
        probe_server(tracking_uri)
    from mlflow.tracking import MlflowClient

    db = sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(db) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.search_experiments(max_results=1)  # forces schema creation / a round trip to a server
    except Exception as e:  # noqa: BLE001 - any driver or HTTP error means the same to the user
        raise StoreUnavailable(f"cannot reach the MLflow store {redact(tracking_uri)}: {e}") from e
    return client


def quiet_run_links() -> None:
    """Stop MLflow printing "🏃 View run ... / 🧪 View experiment ..." to stdout each time a run on a
    tracking server ends (one pair per trial, between our progress lines); ``hpo run`` prints its own
    link once at the end. MLflow's documented switch, read when a run ends; a value the user set stays.
    """
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@dataclass


@dataclass
class _Buffer:
    points: list[Any] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)


class SweepLogger:
    """Writes one sweep to MLflow. Create with ``start``; call ``finish_sweep`` in a ``finally``.

    Args:
        client: an ``MlflowClient``.
        experiment_id: where the runs go.
        parent_run_id: the sweep's run.
    """

    def __init__(self, client: Any, experiment_id: str, parent_run_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self._buffer = _Buffer()

    # -- sweep ---------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        client: Any,
        *,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        artifact_location: str | None,
    ) -> SweepLogger:
        """Create (or reuse) the experiment and open the sweep's parent run (run kind ``sweep``)."""
        quiet_run_links()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            experiment_id = client.create_experiment(
                experiment, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        else:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            experiment_id = found.experiment_id
            if EXPERIMENT_KIND_TAG not in found.tags:  # one created before this tag; a kind set in the UI stays
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        run = client.create_run(experiment_id, run_name=run_name, tags={**tags, **schema.kind_tags(schema.KIND_SWEEP)})
        logger = cls(client, experiment_id, run.info.run_id)
        logger.log_params(run.info.run_id, params)
        return logger

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_json(self, run_id: str, payload: Any, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(payload, indent=2, sort_keys=True, default=str), artifact_file)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(local_dir), artifact_path)

    def finish_sweep(self, status: RunStatus, tags: Mapping[str, str], metrics: Mapping[str, float]) -> None:
        """Flush pending points and close the parent run."""
        self.flush()
        self.set_tags(self.parent_run_id, tags)
        self.log_metrics(self.parent_run_id, metrics, step=0)
        self.client.set_terminated(self.parent_run_id, status=status)

    # -- trials --------------------------------------------------------------------------------------
    def start_trial(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Open a child run of kind ``trial`` nested under the sweep; returns its run id."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={**tags, schema.PARENT_RUN_ID: self.parent_run_id, **schema.kind_tags(schema.KIND_TRIAL)},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int, timestamp_ms: int) -> None:
        """Buffer one epoch's metrics (step = epoch); written by ``flush``."""
        from mlflow.entities import Metric

        for key, value in metrics.items():
            self._buffer.points.append(Metric(key, float(value), timestamp_ms, step, run_id=run_id))

    def maybe_flush(self) -> None:
        """Flush when enough points wait or enough time passed; cheap to call often."""
        waited = time.monotonic() - self._buffer.last_flush
        if len(self._buffer.points) >= FLUSH_POINTS or (self._buffer.points and waited >= FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Write every buffered point, grouped by run, in batches of at most 1,000."""
        points, self._buffer = self._buffer.points, _Buffer()
        by_run: dict[str, list[Any]] = {}
        for point in points:
            by_run.setdefault(point.run_id, []).append(point)
        for run_id, run_points in by_run.items():
            for chunk in _chunks(run_points, MAX_METRICS_PER_BATCH):
                plain = [_without_run_id(p) for p in chunk]
                self.client.log_batch(run_id, metrics=plain, synchronous=True)

    def finish_trial(
        self, run_id: str, status: RunStatus, tags: Mapping[str, str], metrics: Mapping[str, float]
    ) -> None:
        """Write the trial's pending points, summary metrics and tags, then close its run with ``status``.

        One ``log_batch`` carries all three when they fit MLflow's limits (a transaction each would cost
        the Tune loop tens of milliseconds per trial on a busy SQLite file).
        """
        from mlflow.entities import Metric, RunTag

        mine = [p for p in self._buffer.points if p.run_id == run_id]
        self._buffer.points = [p for p in self._buffer.points if p.run_id != run_id]
        now = int(time.time() * 1000)
        points = [_without_run_id(p) for p in mine] + [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        entries = [RunTag(k, _clip(str(v), MAX_TAG_VALUE)) for k, v in tags.items()]
        metric_chunks = list(_chunks(points, MAX_METRICS_PER_BATCH)) or [[]]
        tag_chunks = list(_chunks(entries, MAX_TAGS_PER_BATCH)) or [[]]
        for i in range(max(len(metric_chunks), len(tag_chunks))):
            batch_metrics = metric_chunks[i] if i < len(metric_chunks) else []
            batch_tags = tag_chunks[i] if i < len(tag_chunks) else []
            if batch_metrics or batch_tags:
                self.client.log_batch(run_id, metrics=batch_metrics, tags=batch_tags, synchronous=True)
        self.client.set_terminated(run_id, status=status)

    # -- small writes ----------------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        entries = [Param(k, _clip(_as_text(v), MAX_PARAM_VALUE)) for k, v in params.items()]
        for chunk in _chunks(entries, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk, synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        entries = [RunTag(k, _clip(str(v), MAX_TAG_VALUE)) for k, v in tags.items()]
        for chunk in _chunks(entries, MAX_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk, synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for chunk in _chunks(entries, MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)

    # -- resume (hpo.resume) ---------------------------------------------------------------------------
    @classmethod
    def reopen(cls, client: Any, *, experiment_id: str, parent_run_id: str, tags: Mapping[str, str]) -> SweepLogger:
        """Reopen an existing sweep's parent run to resume it: MLflow status RUNNING again, ``tags`` written.

        The same run keeps every trial, param and artifact the sweep stored before; nothing is copied.
        """
        client.update_run(parent_run_id, status="RUNNING")
        logger = cls(client, experiment_id, parent_run_id)
        logger.set_tags(parent_run_id, tags)
        return logger

    def close_stale_trial(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Close a trial run its dead driver left RUNNING: KILLED, with ``tags`` (why it stopped)."""
        self.set_tags(run_id, tags)
        self.client.set_terminated(run_id, status="KILLED")


def _without_run_id(point: Any) -> Any:
    from mlflow.entities import Metric

    return Metric(point.key, point.value, point.timestamp, point.step)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "... [truncated]"


# -- compression (``hpo compress``) ------------------------------------------------------------------
def log_compress_variant(
    client: Any,
    parent_run_id: str,
    *,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    files: Iterable[Path],
    artifact_path: str = "variant",
) -> str:
    """One compressed variant as a finished child run of the sweep ``parent_run_id``; returns its run id.

    The run carries ``hpo.run_kind: compress`` (trial listings read only kind ``trial``),
    the given tags, params and metrics (step 0), and ``files`` under ``artifact_path``.
    """
    from mlflow.entities import Metric, Param

    parent = client.get_run(parent_run_id)
    run_tags = {**tags, schema.PARENT_RUN_ID: parent_run_id,
                **schema.kind_tags(schema.KIND_COMPRESS)}
    run = client.create_run(parent.info.experiment_id, run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        entries = [Param(k, _clip(_as_text(v), MAX_PARAM_VALUE)) for k, v in params.items()]
        for chunk in _chunks(entries, MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=chunk, synchronous=True)
        points = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for chunk in _chunks(points, MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=chunk, synchronous=True)
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def set_run_tags(client: Any, run_id: str, tags: Mapping[str, str]) -> None:
    """Set ``tags`` on an existing run (a finished one included), in batches within MLflow's limits."""
    from mlflow.entities import RunTag

    entries = [RunTag(k, _clip(str(v), MAX_TAG_VALUE)) for k, v in tags.items()]
    for chunk in _chunks(entries, MAX_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk, synchronous=True)


def log_json_artifact(client: Any, run_id: str, payload: Any, artifact_file: str) -> None:
    """``payload`` as an indented JSON artifact of ``run_id`` (a finished run's too)."""
    client.log_text(run_id, json.dumps(payload, indent=2, sort_keys=True, default=str), artifact_file)


def log_pytorch_model(client: Any, run_id: str, model: Any, input_example: Any, output_example: Any,
                      artifact_path: str) -> str:
    """``model`` as an MLflow Model (pytorch flavour, pyfunc-servable) with the signature of
    ``input_example`` -> ``output_example`` (numpy arrays); returns ``runs:/<run_id>/<artifact_path>``.

    Saved locally with ``mlflow.pytorch.save_model`` and uploaded with the client, so no fluent active
    run is involved; ``mlflow models serve -m runs:/...`` and the model registry take the URI.
    """
    import tempfile

    import mlflow.pytorch
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, output_example)
    # it warns that a CPU build's "+cpu" label is dropped from the pip requirement: true, and expected
    requirements = logging.getLogger("mlflow.utils.requirements_utils")
    level = requirements.level
    requirements.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            mlflow.pytorch.save_model(model, str(local), signature=signature, input_example=input_example)
            client.log_artifacts(run_id, str(local), artifact_path)
    finally:
        requirements.setLevel(level)
    return f"runs:/{run_id}/{artifact_path}"
