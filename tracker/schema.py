"""Names of the tags, params and metrics this project writes to MLflow; readers and writers share them.

A sweep is one MLflow *parent* run; each trial is a *child* run nested under it through MLflow's own
``mlflow.parentRunId`` tag, so the MLflow UI shows the nesting.
"""

from __future__ import annotations

# -- tags on both kinds of run --------------------------------------------------------------------
ROLE = "hpo.role"  # "sweep" on the parent, "trial" on each child
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
SWEEP = "hpo.sweep"  # sweep name
METHOD = "hpo.method"  # grid | random | bayes
SAMPLER = "hpo.sampler"  # grid | random | tpe | gp | cmaes
METRIC = "hpo.metric"  # name of the sweep metric, e.g. val_accuracy
GOAL = "hpo.goal"  # maximize | minimize
SEED = "hpo.seed"
TASK = "hpo.task"  # built-in task name, or the custom function's import path
GIT_COMMIT = "hpo.git_commit"
VERSION_PREFIX = "hpo.version."  # hpo.version.torch, .ray, .optuna, .mlflow

# -- MLflow's own tags -----------------------------------------------------------------------------
PARENT_RUN_ID = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"

# -- parent (sweep) run ----------------------------------------------------------------------------
SWEEP_STATE = "hpo.state"  # running | finished | failed | interrupted
BEST_RUN_ID = "hpo.best_run_id"
BEST_TRIAL_ID = "hpo.best_trial_id"
TRIALS_TOTAL = "hpo.trials_total"  # planned number of trials
SWEEP_FILE_ARTIFACT = "sweep.yaml"  # the sweep file exactly as given
RESOLVED_CONFIG_ARTIFACT = "resolved_config.json"
BEST_CHECKPOINT_DIR = "best_checkpoint"  # artifact folder with the best trial's model.pt
BEST_PARAM_PREFIX = "best."  # params best.<name> on the parent
DIAGNOSIS_SUMMARY_ARTIFACT = "diagnosis_summary.json"
DIAGNOSIS_SUMMARY = "hpo.diagnosis.summary"  # one-line summary tag on the parent

# -- child (trial) run -----------------------------------------------------------------------------
TRIAL_ID = "hpo.trial_id"  # Ray Tune trial id
TRIAL_NUMBER = "hpo.trial_number"  # 0-based order in which the sampler proposed the trials
NODE_ID = "hpo.node_id"  # the Ray node id the trial ran on (its coordinator, for workers > 1)
EARLY_STOPPED = "hpo.early_stopped"  # "true" when the scheduler (ASHA/...) stopped the trial
STOPPED_BY = "hpo.stopped_by"  # asha | hyperband | median
ERROR = "hpo.error"  # error text of a FAILED trial (truncated to MLflow's tag limit)
DIAGNOSIS = "hpo.diagnosis"  # overfitting | underfitting | good_fit | diverged | ...
DIAGNOSIS_CONFIDENCE = "hpo.diagnosis.confidence"
DIAGNOSIS_ARTIFACT = "diagnosis.json"

# -- metrics ---------------------------------------------------------------------------------------
# Per-epoch metrics are logged under their own names with step = epoch (1-based):
EPOCH_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "epoch_seconds")
BEST_PREFIX = "best_"  # best_<metric>: best value of the sweep metric over the trial's epochs
FINAL_PREFIX = "final_"  # final_<metric>: value at the last epoch the trial ran
EPOCHS_RUN = "epochs_run"

# -- compression runs (``hpo compress``): children of the sweep run, one per variant --------------------
RUN_KIND = "hpo.run_kind"  # "compress" on variant runs; trials carry hpo.role=trial
RUN_KIND_COMPRESS = "compress"
ROLE_COMPRESS = "compress"  # their hpo.role: readers that list trials skip them
COMPRESS_METHOD = "hpo.compress.method"  # fp32 | dynamic_int8 | static_int8 | prune_global | ... | onnx
COMPRESS_VARIANT = "hpo.compress.variant"  # the variant's name, e.g. prune_global_0.8
COMPRESS_SOURCE_RUN = "hpo.compress.source_run"  # the trial run whose checkpoint was compressed
COMPRESS_RUNTIME = "hpo.compress.runtime"  # torch | onnxruntime
COMPRESS_PARETO = "hpo.compress.pareto"  # e.g. "latency,size": fronts the variant is on
COMPRESS_SUMMARY_ARTIFACT = "compression/summary.json"  # on the sweep run: the table and Pareto sets
