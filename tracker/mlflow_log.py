"""The only module that writes to MLflow: a parent run per sweep, a child run per trial, batched metrics.

Writes happen on the driver only, so concurrent trials never contend for a SQLite file and remote
trials need no tracking credentials. They go through a local write-ahead journal (``tracker.journal``):
appended to a file first, replayed to the store by a background thread, so the store may be down for
minutes without stopping the sweep or losing a point. Per-call logging costs milliseconds (1,000
``log_metric`` calls took 2.4 s on SQLite here, one ``log_batch`` of 1,000 points 0.045 s), so the
replay writes consecutive epoch points with ``log_batch`` in chunks within MLflow's limits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tracker import journal, replay, schema
from tracker.errors import StoreUnavailable
from tracker.params import param_text
from tracker.replay import MAX_PARAMS_PER_BATCH, MAX_POINTS_PER_BATCH, MAX_TAGS_PER_BATCH
from tracker.schema import RunKind
from tracker.store_template import create_from_template
from tracker.uri import is_server_uri, probe_server, redact, sqlite_path

log = logging.getLogger(__name__)

# MLflow's limits on value lengths (mlflow.utils.validation); its per-batch limits are the replay's
# (tracker.replay), the one place that calls log_batch.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000

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
    """An ``MlflowClient`` on ``tracking_uri``; a SQLite store is created and set to WAL once.

    Creating the schema here, on the driver, before trials start avoids the migration race that several
    processes hit on a fresh database; WAL lets the dashboard read while the sweep writes. A new SQLite
    store is a copy of an empty store MLflow migrated once (``tracker.store_template``); when the
    template cannot be built or copied (no writable cache folder), MLflow migrates the new file itself.

    Raises:
        StoreUnavailable: the store cannot be reached.
    """
    if is_server_uri(tracking_uri):
        probe_server(tracking_uri)
    from mlflow.tracking import MlflowClient

    db = sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            create_from_template(db)
        except (OSError, sqlite3.Error) as e:  # e.g. a read-only home: MLflow's own migration still works
            log.info("no store template (%s): MLflow migrates %s itself", e, db)
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


class SweepLogger:
    """Writes one sweep to MLflow through its journal. Create with ``start``; call ``finish_sweep`` in a ``finally``.

    Every write is appended to the local journal (``tracker.journal``) and returns at once; a background
    thread replays the journal to the store in order, so trials never wait on the store and an outage
    loses nothing. Run ids handed out for trials are MLflow's when the store answers at once, else our own
    run keys: :meth:`run_id` maps a key to the run id once the store has it.

    Args:
        client: an ``MlflowClient``.
        experiment_id: where the runs go.
        parent_run_id: the sweep's run (it exists: created by ``start`` or found by a resume).
        sweep: the sweep's name, for the journal's file name (read from the parent run when not given).
        journal_folder: where the journal goes (default ``$HPO_HOME/journal``).

    Raises:
        JournalWriteError: the journal cannot be created (disk full, no permission); names the path.
    """

    def __init__(
        self,
        client: Any,
        experiment_id: str,
        parent_run_id: str,
        *,
        sweep: str | None = None,
        journal_folder: Path | None = None,
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        if sweep is None:
            sweep = client.get_run(parent_run_id).data.tags.get(schema.SWEEP, "")
        self.journal = journal.Journal.create(
            journal_folder or journal.journal_folder(), sweep=sweep or "", tracking_uri=client.tracking_uri,
            experiment_id=experiment_id, parent_run_id=parent_run_id,
        )
        self._replay = replay.ReplayThread(replay.Replayer(self.journal.path, client), on_exit=self.journal.release)
        self._replay.start()
        self._keys: set[str] = set()  # trial handles that are our run keys (the store had not answered)
        self.unsynced: str | None = None  # set by finish_sweep when the store did not take everything

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
        journal_folder: Path | None = None,
    ) -> SweepLogger:
        """Create (or reuse) the experiment and open the sweep's parent run (run kind ``sweep``).

        The parent run is created here, synchronously (its id is printed and links everything else); the
        store answered ``open_client`` a moment ago. Everything after goes through the journal.
        """
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
        run = client.create_run(experiment_id, run_name=run_name, tags={
            **tags, **schema.kind_tags(schema.KIND_SWEEP), schema.RUN_KEY: journal.new_run_key()})
        try:
            logger = cls(client, experiment_id, run.info.run_id, sweep=tags.get(schema.SWEEP, run_name),
                         journal_folder=journal_folder)
        except journal.JournalWriteError:  # nothing can be kept: close the run now rather than leave it RUNNING
            client.set_tag(run.info.run_id, schema.SWEEP_STATE, "failed")
            client.set_terminated(run.info.run_id, status="FAILED")
            raise
        logger.log_params(run.info.run_id, params)
        return logger

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        if len(text) <= journal.INLINE_TEXT_CHARS:
            self._write("text", run_id, text=text, file=artifact_file)
            return
        with tempfile.TemporaryDirectory() as folder:  # too large to inline: a file copy beside the journal
            (Path(folder) / Path(artifact_file).name).write_text(text)
            self.log_artifacts(run_id, folder, str(Path(artifact_file).parent).strip("."))

    def log_json(self, run_id: str, payload: Any, artifact_file: str) -> None:
        self.log_text(run_id, json.dumps(payload, indent=2, sort_keys=True, default=str), artifact_file)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str) -> None:
        """Copy ``local_dir`` beside the journal (the caller may delete it at once); uploaded on replay."""
        copy = self.journal.files / f"{len(self._copies())}-{Path(artifact_path).name or 'files'}"
        try:
            shutil.copytree(local_dir, copy)
        except OSError as e:
            raise journal.JournalWriteError(f"cannot copy {local_dir} to the journal's folder {copy}: {e}") from None
        self._write("files", run_id, folder=str(copy.relative_to(self.journal.path.parent)),
                    artifact_path=artifact_path or None)

    def _copies(self) -> list[Path]:
        return list(self.journal.files.iterdir()) if self.journal.files.is_dir() else []

    def finish_sweep(self, status: RunStatus, tags: Mapping[str, str], metrics: Mapping[str, float]) -> None:
        """Close the parent run, then wait (bounded) until the store has every write.

        When the store does not take them in time, :attr:`unsynced` says how many writes wait in which
        journal and how to write them (``hpo sync``); they are safe on disk either way.
        """
        self.set_tags(self.parent_run_id, tags)
        self.log_metrics(self.parent_run_id, metrics, step=0)
        self._write("end", self.parent_run_id, status=status, ms=journal.now_ms())
        self.close()

    def close(self, wait_s: float | None = None) -> bool:
        """Mark the journal complete and wait up to ``wait_s`` of no progress for the store to take it all.

        Returns True when the store has everything (the journal is then deleted).
        """
        if self.journal.closed:
            return self.unsynced is None
        self.journal.close()
        done = self._replay.drain(replay.drain_wait_s() if wait_s is None else wait_s)
        if done:
            journal.remove(self.journal.path)
            return True
        left = sum(1 for _ in self._replay.replayer.pending())
        self.unsynced = (f"{left} writes are journaled in {self.journal.path}; the store "
                         f"{redact(self.client.tracking_uri)} did not take them: run `hpo sync` when it is back")
        return False

    def run_id(self, handle: str) -> str:
        """MLflow's run id for a handle ``start_trial`` returned (the handle itself if not replayed yet)."""
        return (self._replay.replayer.run_id(handle) or handle) if handle in self._keys else handle

    # -- trials --------------------------------------------------------------------------------------
    def start_trial(
        self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str], *, kind: RunKind = schema.KIND_TRIAL
    ) -> str:
        """Open a child run of kind ``kind`` (a search ``trial``, a seed ``confirm`` run) nested under the sweep;
        returns its run id.

        The run is created by the replay thread; while the store answers promptly this waits for its id
        (milliseconds), else it returns the run's key at once (see :meth:`run_id`).
        """
        key = journal.new_run_key()
        # the params in the run's own entry: no run reaches the store without its configuration
        self._append({"op": "run", "key": key, "name": run_name, "ms": journal.now_ms(),
                      "parent_run_id": self.parent_run_id,
                      "tags": {**_tag_texts(tags), **schema.kind_tags(kind)},
                      "params": {k: _clip(param_text(v), MAX_PARAM_VALUE) for k, v in params.items()}})
        self._replay.wake()
        run_id = self._replay.wait_for_run(key, TRIAL_RUN_WAIT_S)
        handle = run_id or key
        if run_id is None:
            self._keys.add(key)
        return handle

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int, timestamp_ms: int) -> None:
        """Journal one epoch's metrics (step = epoch) with the time the trial reported them."""
        if metrics:
            self._write("metrics", run_id, points=[[k, float(v), int(timestamp_ms), int(step)]
                                                   for k, v in metrics.items()])

    def maybe_flush(self) -> None:
        """fsync the journal every few seconds and let the replay thread catch up; cheap to call often."""
        self.journal.sync(if_due=True)
        self._replay.wake()

    def flush(self) -> None:
        """fsync the journal now and wake the replay thread."""
        self.journal.sync()
        self._replay.wake()

    def finish_trial(
        self, run_id: str, status: RunStatus, tags: Mapping[str, str], metrics: Mapping[str, float]
    ) -> None:
        """Journal the trial's summary metrics and tags, then close its run with ``status``."""
        self.log_metrics(run_id, metrics, step=0)
        self.set_tags(run_id, tags)
        self._write("end", run_id, status=status, ms=journal.now_ms())
        self.flush()

    # -- small writes ----------------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        if params:
            self._write("params", run_id, params={k: _clip(param_text(v), MAX_PARAM_VALUE) for k, v in params.items()})

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        if not tags:
            return
        texts = _tag_texts(tags)
        refs = {name: value for name, value in texts.items() if value in self._keys}  # e.g. hpo.best_run_id
        self._write("tags", run_id, tags=texts, **({"refs": refs} if refs else {}))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        now = journal.now_ms()
        points = [[k, float(v), now, int(step)] for k, v in metrics.items() if math.isfinite(float(v))]
        if points:
            self._write("metrics", run_id, points=points)

    # -- the journal -----------------------------------------------------------------------------------
    def _write(self, op: str, handle: str, **fields: Any) -> None:
        target = {"key": handle} if handle in self._keys else {"run_id": handle}
        self._append({"op": op, **target, **fields})

    def _append(self, entry: dict[str, Any]) -> None:
        self.journal.append(entry)

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
        self._write("end", run_id, status="KILLED", ms=journal.now_ms())


TRIAL_RUN_WAIT_S = 1.0  # the longest a new trial waits for its run id from a store that answers


def _tag_texts(tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: _clip(str(v), MAX_TAG_VALUE) for k, v in tags.items()}



def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        entries = [Param(k, _clip(param_text(v), MAX_PARAM_VALUE)) for k, v in params.items()]
        for chunk in _chunks(entries, MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=chunk, synchronous=True)
        points = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for chunk in _chunks(points, MAX_POINTS_PER_BATCH):
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
