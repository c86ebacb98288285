"""The run schema: the tags, params and metrics every run this project writes to MLflow carries.

Readers and writers share these names; ``docs/run_schema.md`` is the same schema in prose. A sweep is
one MLflow *parent* run; the runs it creates (its trials, compression variants, later confirmation runs)
are *child* runs nested under it through MLflow's own ``mlflow.parentRunId`` tag, so the MLflow UI
shows the nesting. What a run is comes from its ``hpo.run_kind`` tag, never from the parent link:
readers select the kind they show, so adding a kind of child run changes no existing view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

# -- what a run is: on every run we create ----------------------------------------------------------
RUN_KIND = "hpo.run_kind"
RunKind = Literal["sweep", "trial", "confirm", "compress"]
KIND_SWEEP: RunKind = "sweep"  # the parent run of one sweep
KIND_TRIAL: RunKind = "trial"  # one trial of the search, a child of its sweep
KIND_CONFIRM: RunKind = "confirm"  # a top trial re-run with a fresh seed (hpo.confirm), a child of its sweep
KIND_COMPRESS: RunKind = "compress"  # a compressed variant of the best model (hpo compress), a child of its sweep
RUN_KINDS: tuple[RunKind, ...] = (KIND_SWEEP, KIND_TRIAL, KIND_CONFIRM, KIND_COMPRESS)
RUN_KEY = "hpo.run_key"  # our own id of the run, made before MLflow's exists: replay finds the run by it
SCHEMA_VERSION = "hpo.schema_version"
CURRENT_SCHEMA_VERSION = "2"  # 2: hpo.run_kind + hpo.schema_version; 1 (no version tag): hpo.role
LEGACY_ROLE = "hpo.role"  # schema 1's kind tag ("sweep" | "trial"); readers still accept it


def run_kind(tags: Mapping[str, str]) -> str | None:
    """What a run is from its tags: ``hpo.run_kind``, else schema 1's ``hpo.role``, else ``None``."""
    return tags.get(RUN_KIND) or tags.get(LEGACY_ROLE) or None


def kind_tags(kind: RunKind) -> dict[str, str]:
    """The tags that say what a new run is, written by ``tracker.mlflow_log`` on every run it creates."""
    return {RUN_KIND: kind, SCHEMA_VERSION: CURRENT_SCHEMA_VERSION}


# -- tags on sweep and trial runs -----------------------------------------------------------------
SWEEP = "hpo.sweep"  # sweep name
METHOD = "hpo.method"  # grid | random | bayes
SAMPLER = "hpo.sampler"  # the sampler that ran: grid | random | tpe | gp | cmaes | gp-cmaes | gp-tpe | nsga2
SAMPLER_REQUESTED = "hpo.sampler_requested"  # bayes: what the sweep file asked for (auto, the default, or a name)
SAMPLER_REASON = "hpo.sampler_reason"  # bayes: why that sampler (hpo.sampler_choice)
METRIC = "hpo.metric"  # name of the sweep metric, e.g. val_accuracy
GOAL = "hpo.goal"  # maximize | minimize
SEED = "hpo.seed"
TASK = "hpo.task"  # built-in task name, or the custom function's import path
GIT_COMMIT = "hpo.git_commit"
VERSION_PREFIX = "hpo.version."  # hpo.version.torch, .ray, .optuna, .mlflow, .python, .hpo (this package)

# -- MLflow's own tags -----------------------------------------------------------------------------
PARENT_RUN_ID = "mlflow.parentRunId"

# -- sweep (parent) run ----------------------------------------------------------------------------
SWEEP_STATE = "hpo.state"
SweepState = Literal["running", "finished", "failed", "interrupted", "crashed"]
SWEEP_STATES: tuple[SweepState, ...] = ("running", "finished", "failed", "interrupted", "crashed")
# running -> finished (every trial ended), failed (the driver raised), interrupted (Ctrl-C, a time
# limit that stopped the search); crashed is what readers show for a running sweep whose driver is gone
# (tracker.liveness), never written. A resumed sweep goes back to running from any state but running;
# a finished one only when its budget was raised.
SWEEP_TRANSITIONS: dict[SweepState, tuple[SweepState, ...]] = {
    "running": ("finished", "failed", "interrupted", "crashed"),
    "interrupted": ("running",),
    "crashed": ("running",),
    "finished": ("running",),
    "failed": ("running",),
}
BEST_RUN_ID = "hpo.best_run_id"
BEST_TRIAL_ID = "hpo.best_trial_id"
TRIALS_TOTAL = "hpo.trials_total"  # planned number of trials
SWEEP_FILE_ARTIFACT = "sweep.yaml"  # the sweep file exactly as given
RESOLVED_CONFIG_ARTIFACT = "resolved_config.json"
BEST_CHECKPOINT_DIR = "best_checkpoint"  # artifact folder with the best trial's model.pt
BEST_PARAM_PREFIX = "best."  # params best.<name> on the parent
# The held-out test split (hpo.holdout): read once, after the search, for the winner's best checkpoint;
# test_<name> metrics (test_accuracy, test_loss, ...: every val_<name> renamed) on the winner's trial run
# and on the sweep run. When there is no test estimate, the sweep run says why in this tag.
TEST_PREFIX = "test_"
TEST_NOTE = "hpo.test_note"  # e.g. "no test split: no test estimate"
DIAGNOSIS_SUMMARY_ARTIFACT = "diagnosis_summary.json"
DIAGNOSIS_SUMMARY = "hpo.diagnosis.summary"  # one-line summary tag on the parent
# multi-objective sweeps (``metric:`` a list): the objectives, as JSON [{"name": ..., "goal": ...}, ...],
# on the sweep run and its trials; when it ends, the front's hypervolume and size on the sweep run
OBJECTIVES = "hpo.objectives"
HYPERVOLUME = "hypervolume"
PARETO_SIZE = "pareto_size"
# The driver's heartbeat and the sweep's running time across resumes (hpo.lease, tracker.liveness).
DRIVER_HOST = "hpo.driver.host"  # hostname of the process driving the sweep
DRIVER_PID = "hpo.driver.pid"  # its process id on that host
HEARTBEAT = "hpo.driver.heartbeat"  # unix time (s) of the driver's last beat, rewritten every HEARTBEAT_S
HEARTBEAT_S = 10.0  # how often a live driver beats
HEARTBEAT_STALE_S = 3 * HEARTBEAT_S  # a beat older than this on another host: the driver is gone
ELAPSED_S = "hpo.elapsed_s"  # seconds the sweep has run, summed over its resumes (budget.time_limit_s)
RESUMES = "hpo.resumes"  # how many times the sweep was resumed

# -- trial (child) run -----------------------------------------------------------------------------
TRIAL_ID = "hpo.trial_id"  # Ray Tune trial id
TRIAL_NUMBER = "hpo.trial_number"  # 0-based order in which the sampler proposed the trials
NODE_ID = "hpo.node_id"  # the Ray node id the trial ran on (its coordinator, for workers > 1)
EARLY_STOPPED = "hpo.early_stopped"  # "true" when the scheduler (ASHA/...) stopped the trial
STOPPED_BY = "hpo.stopped_by"  # what ended the trial before its last epoch: one of StoppedBy
StoppedBy = Literal["asha", "hyperband", "median", "time_limit", "crash", "timeout"]
STOPPED_BY_SCHEDULERS: tuple[StoppedBy, ...] = ("asha", "hyperband", "median")  # early stopping (KILLED)
STOPPED_BY_TIME_LIMIT: StoppedBy = "time_limit"  # budget.time_limit_s ran out while it ran (KILLED)
STOPPED_BY_CRASH: StoppedBy = "crash"  # the driver died (or was interrupted) while it ran: it is run again (KILLED)
STOPPED_BY_TIMEOUT: StoppedBy = "timeout"  # a trial or report timeout ended it (FAILED, hpo.timeouts)
REPLACES = "hpo.replaces"  # on a re-run trial: the run id of the killed run it replaces (same trial number)
REPLACED_BY = "hpo.replaced_by"  # on a killed run: the run id of its re-run
# on a re-run that continued from the killed run's saved state: the last epoch that state held. The re-run
# logs only the epochs its killed run(s) had not logged; those stay on the run(s) it replaces.
RESUMED_FROM_EPOCH = "hpo.resumed_from_epoch"
# what ``hpo reproduce`` needs to run a trial again as it ran (with the versions and git commit above)
THREADS = "hpo.threads"  # torch intra-op threads the trial trained with: CPU results differ in the last bits otherwise
HOST = "hpo.host"  # hostname of the node the trial ran on (from Ray's result)
DEVICE = "hpo.device"  # cpu | cuda: where the built-in loop trained (pick_device on that node)
TRIAL_SEED = "hpo.trial_seed"  # the seed the trial's config held (init, batch order, augmentation)
# the training signals' per-epoch metrics (trainers.signal_names.PREFIX, which a test holds equal to this):
# measurements of training that decide no verdict; readers that draw curves may skip them
SIGNALS_PREFIX = "signals/"
# per-epoch metrics that measure wall-clock time, not the model: never expected to reproduce
TIMING_METRICS = ("epoch_seconds", "latency_ms")
ERROR = "hpo.error"  # error text of a FAILED trial (truncated to MLflow's tag limit)
DIAGNOSIS = "hpo.diagnosis"  # overfitting | underfitting | good_fit | diverged | insufficient_data
DIAGNOSIS_CONFIDENCE = "hpo.diagnosis.confidence"
DIAGNOSIS_ARTIFACT = "diagnosis.json"
PARETO = "hpo.pareto"  # "true" on the trials of a multi-objective sweep's Pareto front, set when it ends

# -- metrics ---------------------------------------------------------------------------------------
# Per-epoch metrics are logged under their own names with step = epoch (1-based). The learning
# curves the diagnosis reads; every other per-epoch metric (val_f1, val_mae, ...) does not describe one.
CURVE_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr")
EPOCH_METRICS = (*CURVE_METRICS, "epoch_seconds")
BEST_PREFIX = "best_"  # best_<metric>: best value of the sweep metric over the trial's epochs
FINAL_PREFIX = "final_"  # final_<metric>: value at the last epoch the trial ran
EPOCHS_RUN = "epochs_run"

# -- seed confirmation (``confirm:`` / ``hpo confirm``): confirm runs are children of the sweep run ---------
CONFIRMS = "hpo.confirms"  # on a confirm run: the run id of the search trial whose configuration it re-runs
CONFIRM_SEED = "hpo.confirm.seed"  # on a confirm run: its seed (also its `seed` param)
CONFIRM_STATE = "hpo.confirm.state"  # on the sweep run: "done" once the confirmation summary is written
CONFIRM_VERDICT = "hpo.confirm.verdict"  # on the sweep run: winner vs runner-up, distinguishable or not at 5%
CONFIRM_ARTIFACT = "confirmation.json"  # on the sweep run: per configuration mean/std/95% interval, the test
CONFIRM_MEAN_PREFIX = "confirm_mean_"  # sweep-run metrics: the winner's mean over seeds (val and test metric)
CONFIRM_P_VALUE = "confirm_p_value"  # sweep-run metric: Welch's p-value, winner vs runner-up (validation)

# -- compression runs (``hpo compress``): children of the sweep run, one per variant --------------------
COMPRESS_METHOD = "hpo.compress.method"  # fp32 | dynamic_int8 | static_int8 | prune_global | ... | onnx
COMPRESS_VARIANT = "hpo.compress.variant"  # the variant's name, e.g. prune_global_0.8
COMPRESS_SOURCE_RUN = "hpo.compress.source_run"  # the trial run whose checkpoint was compressed
COMPRESS_RUNTIME = "hpo.compress.runtime"  # torch | onnxruntime
COMPRESS_PARETO = "hpo.compress.pareto"  # e.g. "latency,size": fronts the variant is on
COMPRESS_SPLIT = "hpo.compress.split"  # the split the variant's metric was measured on (validation)
COMPRESS_TEST_SPLIT = "hpo.compress.test_split"  # whether the variant was scored on the test split (test_* metrics)
COMPRESS_NOTE = "hpo.compress.note"  # a remark on the variant (e.g. int8 slower than fp32 at batch 1)
COMPRESS_DISTILL_TRIAL = "hpo.compress.distill_trial"  # a student of the distillation sweep: its number
COMPRESS_SELECTED = "hpo.compress.selected"  # true on the student that became the distill variant
COMPRESS_SUMMARY_ARTIFACT = "compression/summary.json"  # on the sweep run: the table and Pareto sets


def test_metric(metric: str) -> str:
    """The test-split counterpart of a validation metric: ``val_accuracy`` -> ``test_accuracy``."""
    return TEST_PREFIX + metric.removeprefix("val_")
