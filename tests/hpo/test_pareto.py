"""Multi-objective sweeps: the metric list, its rules, the Pareto front and hypervolume (pure), and real
sweeps whose reported front is checked against one recomputed from the stored runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sweep_reads import client

from hpo.config import SweepConfig
from hpo.errors import ConfigError
from hpo.loading import validate
from hpo.objectives import front_of, hypervolume, objective_values, pareto_mask, reference_point
from hpo.report import best_from_store
from tracker import schema

ACC_PARAMS = [{"name": "val_accuracy", "goal": "maximize"}, {"name": "params", "goal": "minimize"}]
BASE: dict[str, Any] = {
    "name": "mo", "metric": ACC_PARAMS, "trainer": {"task": "digits", "epochs": 2},
    "parameters": {"hidden": {"values": [8, 16]}},
}


# -- the front and its hypervolume (pure) -----------------------------------------------------------
def test_front_keeps_every_non_dominated_point_and_no_dominated_one() -> None:
    # (accuracy max, params min): b dominates c (better on both); a and b trade off; d equals b
    points = [[0.9, 1000], [0.8, 200], [0.7, 300], [0.8, 200], [0.95, 5000], [0.95, 6000]]
    assert pareto_mask(points, ["maximize", "minimize"]) == [True, True, False, True, True, False]
    # all minimised: the same rule with signs flipped
    assert pareto_mask([[1, 2], [2, 1], [2, 2]], ["minimize", "minimize"]) == [True, True, False]


def test_hypervolume_2d_is_the_exact_staircase_area() -> None:
    # minimise both, reference (4, 4): the union of [1,4]x[3,4], [2,4]x[2,4], [3,4]x[1,4]
    assert hypervolume([[1, 3], [2, 2], [3, 1]], ["minimize", "minimize"], [4, 4]) == pytest.approx(3 + 2 + 1)
    # a dominated point and a point beyond the reference add nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], ["minimize", "minimize"], [4, 4]) == pytest.approx(6)
    # maximised objectives are measured the same way, mirrored
    # ([0,3] x [2,4]) united with ([0,2] x [1,4])
    assert hypervolume([[3, 2], [2, 1]], ["maximize", "minimize"], [0, 4]) == pytest.approx(6 + 6 - 4)


def test_hypervolume_3d_matches_optunas() -> None:
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(0)
    points = rng.random((12, 3))
    ref = np.array([1.1, 1.1, 1.1])
    ours = hypervolume(points.tolist(), ["minimize"] * 3, ref.tolist())
    front = points[pareto_mask(points, ["minimize"] * 3)]
    assert ours == pytest.approx(compute_hypervolume(front, ref), rel=1e-9)


def test_reference_point_is_the_worst_observed_pushed_out_by_a_tenth_of_the_range() -> None:
    assert reference_point([[0.9, 1000], [0.5, 200]], ["maximize", "minimize"]) == pytest.approx([0.46, 1080])
    # a constant objective counts as a range of 1, so its worst trial still adds volume
    assert reference_point([[0.9, 7], [0.5, 7]], ["maximize", "minimize"]) == pytest.approx([0.46, 7.1])


def test_objective_values_come_from_the_first_objectives_best_epoch() -> None:
    history = {"val_accuracy": [0.5, 0.8, 0.8, 0.7], "val_loss": [1.0, 0.6, 0.4, 0.9], "params": [10.0] * 4}
    values = objective_values(history, [("val_accuracy", "maximize"), ("val_loss", "minimize")])
    assert values == {"val_accuracy": 0.8, "val_loss": 0.6}  # epoch 2: the earliest of the tied best
    assert objective_values(history, [("val_accuracy", "maximize"), ("val_f1", "maximize")]) is None
    scored, front = front_of(
        {"a": history, "b": {"val_accuracy": [0.9], "params": [50.0]}, "c": {"val_accuracy": [0.7], "params": [20.0]}},
        [("val_accuracy", "maximize"), ("params", "minimize")],
    )
    assert front == ["b", "a"] and set(scored) == {"a", "b", "c"}


# -- the metric list in the sweep file ---------------------------------------------------------------
def test_a_metric_list_keeps_metric_as_the_first_objective_and_round_trips() -> None:
    config = validate(dict(BASE))
    assert config.metric.name == "val_accuracy" and config.multi_objective
    assert [(m.name, m.goal) for m in config.objectives] == [("val_accuracy", "maximize"), ("params", "minimize")]
    dumped = config.model_dump(mode="json")
    assert dumped["metric"] == ACC_PARAMS and "objective_list" not in dumped
    assert validate(dumped).objectives == config.objectives
    single = validate({**BASE, "metric": {"name": "val_loss", "goal": "minimize"}})
    assert not single.multi_objective and single.objectives == (single.metric,)
    assert single.model_dump(mode="json")["metric"] == {"name": "val_loss", "goal": "minimize"}


@pytest.mark.parametrize(("metric", "message"), [
    ([ACC_PARAMS[0], {"name": "params", "goal": "smallest"}],
     r"metric\[1\]\.goal: .*'maximize' or 'minimize'.*smallest"),
    ([ACC_PARAMS[0], {"name": "params", "gaol": "minimize"}], r"metric\[1\]: unknown key 'gaol'"),
    ([ACC_PARAMS[0], ACC_PARAMS[0]], "each objective once, got val_accuracy"),
    ([], "empty list"),
])
def test_a_bad_metric_list_names_the_item(metric: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate({**BASE, "metric": metric})


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"metric": [ACC_PARAMS[0], {"name": "val_mae", "goal": "minimize"}]}, "metric[1].name",
     "'val_mae' is not reported by task digits"),
    ({"metric": [ACC_PARAMS[0], {"name": "latency_ms", "goal": "minimize"}]}, "metric[1].name",
     "budget.max_concurrent: 1"),
    ({"early_stop": {"type": "median"}}, "early_stop.type", r"early_stop: \{type: none\}"),
    ({"sampler": "cmaes", "parameters": {"lr": {"distribution": "log_uniform", "min": 1e-3, "max": 0.1},
                                          "hidden": {"distribution": "int", "min": 8, "max": 32}}},
     "sampler", "cmaes optimises one objective"),
])
def test_rules_refuse_what_cannot_run_with_several_objectives(change: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        validate({**BASE, **change})
    assert caught.value.field == field


def test_latency_is_an_objective_with_one_trial_at_a_time_and_cost_metrics_need_no_list() -> None:
    config = validate({**BASE, "metric": [ACC_PARAMS[0], {"name": "latency_ms", "goal": "minimize"}],
                       "budget": {"max_concurrent": 1}, "sampler": "nsga2"})
    assert config.objectives[1].name == "latency_ms" and config.sampler_name == "nsga2"
    assert isinstance(validate({**BASE, "metric": {"name": "flops", "goal": "minimize"}}), SweepConfig)


# -- real sweeps -------------------------------------------------------------------------------------
MO_YAML = """\
name: pareto
method: random
metric: [{name: val_accuracy, goal: maximize}, {name: params, goal: minimize}]
budget: {trials: 6, max_concurrent: 2}
seed: 3
trainer: {task: digits, epochs: 2, options: {train_fraction: 0.3}}
parameters:
  hidden: {values: [4, 8, 16, 32]}
  lr: {distribution: log_uniform, min: 3.0e-3, max: 0.1}
"""


def _recomputed_front(uri: str, parent_run_id: str) -> tuple[dict[str, tuple[float, float]], set[str]]:
    """Each finished trial's (val_accuracy, params) at its best val_accuracy epoch, and the non-dominated
    ones, straight from MlflowClient (independent of hpo.objectives)."""
    mlflow = client(uri)
    parent = mlflow.get_run(parent_run_id)
    runs = mlflow.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{parent_run_id}'")
    values = {}
    for run in runs:
        if run.info.status == "FAILED":
            continue
        acc = sorted(mlflow.get_metric_history(run.info.run_id, "val_accuracy"), key=lambda m: m.step)
        params = {m.step: m.value for m in mlflow.get_metric_history(run.info.run_id, "params")}
        best = max(acc, key=lambda m: m.value)  # max() keeps the earliest of equal values
        values[run.info.run_id] = (best.value, params[best.step])
    front = {
        rid for rid, (a, p) in values.items()
        if not any(a2 >= a and p2 <= p and (a2 > a or p2 < p) for a2, p2 in values.values())
    }
    return values, front


@pytest.mark.slow
def test_a_real_sweep_reports_exactly_the_non_dominated_trials(
    sweep_runner: Callable[..., Any], tmp_path: Path
) -> None:
    run = sweep_runner(tmp_path / "mo", MO_YAML)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = run.result()
    values, front = _recomputed_front(run.tracking_uri, doc["parent_run_id"])
    assert len(values) == 6 and 0 < len(front) < 6  # the seed gives dominated trials and a front
    assert set(doc["pareto_front"]) == front
    assert [m["run_id"] for m in doc["best"]] == doc["pareto_front"]
    for member in doc["best"]:
        assert (member["objectives"]["val_accuracy"], member["objectives"]["params"]) == values[member["run_id"]]
    # the chosen member is the front's best on the first objective: the sweep run's best run and checkpoint
    chosen = max(front, key=lambda rid: (values[rid][0], -values[rid][1]))
    assert doc["chosen"] == doc["best"][0]["run_id"] == chosen
    mlflow = client(run.tracking_uri)
    parent = mlflow.get_run(doc["parent_run_id"])
    assert parent.data.tags[schema.BEST_RUN_ID] == chosen
    assert json.loads(parent.data.tags[schema.OBJECTIVES]) == yaml.safe_load(MO_YAML)["metric"]
    assert parent.data.metrics[schema.PARETO_SIZE] == len(front)
    assert doc["hypervolume"] == pytest.approx(parent.data.metrics[schema.HYPERVOLUME]) and doc["hypervolume"] > 0
    tagged = {rid for rid in values if mlflow.get_run(rid).data.tags.get(schema.PARETO) == "true"}
    assert tagged == front
    # params is what the model has: the default MLP, 64 -> hidden -> hidden -> 10 on digits
    for rid, (_, params) in values.items():
        h = int(mlflow.get_run(rid).data.params["hidden"])
        assert params == (64 * h + h) + (h * h + h) + (h * 10 + 10)
    # hpo best reads the same front back from the store (in-process: a subprocess costs seconds here)
    stored, text = best_from_store("pareto", run.tracking_uri, top=5)
    assert stored["pareto_front"] == doc["pareto_front"] and stored["hypervolume"] == pytest.approx(doc["hypervolume"])
    assert [m["objectives"] for m in stored["best"]] == [m["objectives"] for m in doc["best"]]
    assert f"Pareto front: {len(front)} of 6 scored trials" in text


OMITS = """\
def train(config, report):
    for epoch in (1, 2):
        metrics = {"val_loss": 1.0 / (epoch * config["size"])}
        if config["size"] == 1:
            metrics["params"] = 100.0
        report(metrics)
"""


@pytest.mark.slow
def test_a_custom_function_that_omits_an_objective_fails_that_trial_by_name(
    sweep_runner: Callable[..., Any], tmp_path: Path
) -> None:
    folder = tmp_path / "omits"
    folder.mkdir()
    (folder / "omits.py").write_text(OMITS, encoding="utf-8")
    run = sweep_runner(folder, """\
name: omits
method: grid
metric: [{name: val_loss, goal: minimize}, {name: params, goal: minimize}]
budget: {max_concurrent: 1}
trainer: {function: "omits:train"}
parameters:
  size: {values: [1, 2]}
""")
    doc = run.result()
    by_size = {t["params"]["size"]: t for t in doc["trials"]}
    assert by_size[1]["status"] == "FINISHED" and by_size[1]["pareto"]
    assert by_size[2]["status"] == "FAILED"
    assert "not the objective(s) params" in by_size[2]["error"]
    assert doc["pareto_front"] == [by_size[1]["run_id"]]


@pytest.mark.parametrize(("change", "field"), [
    ("early_stop: {type: asha}\n", "early_stop"),
    ("", "metric[1].name"),
])
def test_hpo_run_refuses_before_creating_anything(run_hpo: Any, tmp_path: Path, change: str, field: str) -> None:
    second = "params" if change else "val_r2"
    (tmp_path / "sweep.yaml").write_text(
        "name: bad\nmetric: [{name: val_accuracy, goal: maximize}, {name: " + second + ", goal: minimize}]\n"
        + change + "trainer: {task: digits, epochs: 2}\nparameters:\n  hidden: {values: [8, 16]}\n",
        encoding="utf-8",
    )
    home = tmp_path / "hpo_home"
    done = run_hpo(["run", "sweep.yaml"], cwd=tmp_path, home=home)
    assert done.returncode == 2, done.stderr
    assert field in done.stderr and "sweep.yaml" in done.stderr
    assert not home.exists() or not any(home.iterdir())


def test_the_searcher_gets_one_metric_and_mode_per_objective_and_nsga2_on_request() -> None:
    import optuna

    from hpo.search import make_searcher
    from hpo.trial_book import TrialBook

    lr = {"lr": {"distribution": "log_uniform", "min": 1e-3, "max": 0.1}}  # infinite: not run as a grid
    config = validate({**BASE, "sampler": "nsga2", "parameters": lr})
    searcher = make_searcher(config, 8, TrialBook())
    assert searcher.metric == ["hpo_best", "hpo_best.params"] and searcher.mode == ["max", "min"]
    assert isinstance(searcher._sampler, optuna.samplers.NSGAIISampler)
    single = make_searcher(validate({**BASE, "metric": ACC_PARAMS[0], "parameters": lr}), 8, TrialBook())
    assert single.metric == "hpo_best" and single.mode == "max"
