"""trainers.catalog: declarations, defaults, and cross_check's rules on one trial config."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from trainers.catalog import (
    CATALOG,
    OPTIMIZERS,
    SCHEDULERS,
    HParam,
    cross_check,
    defaults,
    is_active,
    resolve,
    scaled_lr,
)

_ORIGINAL = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "epochs", "model",
             "hidden", "layers", "dropout", "train_fraction", "seed")


def test_catalog_import_stays_torch_free() -> None:
    code = "import sys, trainers.catalog; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_original_names_are_kept() -> None:
    # sweep files written for the first trainer name these settings; they must keep validating
    assert set(_ORIGINAL) <= set(CATALOG)


def _other_value(param: HParam, config: dict[str, Any]) -> Any:
    """A value of ``param`` other than its default that ``config`` (where it applies) accepts."""
    if param.kind == "bool":
        candidates: list[Any] = [not param.default]
    elif param.kind == "int_list":
        candidates = [[1], [2, 3]]
    elif param.choices is not None:
        candidates = [c for c in param.choices if c != param.default]
    else:
        d = param.default
        steps = [2 * d, d + 1, d - 1] if param.kind == "int" else [d / 2, 2 * d, d + 0.1, d + 1e-3]
        candidates = [v for v in steps if v != d]
    fits = [v for v in candidates if param.check(v) is None and cross_check({**config, param.name: v}) == []]
    assert fits, (param.name, candidates)
    return fits[0]


_CONDITIONAL = sorted(name for name, param in CATALOG.items() if param.requires)


@pytest.mark.parametrize("name", _CONDITIONAL)
def test_a_conditional_setting_is_accepted_only_where_it_applies(name: str) -> None:
    param = CATALOG[name]
    applies = {key: allowed[0] for key, allowed in param.requires.items()}
    value = _other_value(param, applies)
    for key, allowed in param.requires.items():
        for each in allowed:  # accepted wherever it applies
            assert cross_check({**applies, key: each, name: value}) == [], (key, each, value)
        elsewhere = next(c for c in CATALOG[key].choices or () if c not in allowed)
        problems = cross_check({**applies, key: elsewhere, name: value})
        assert problems == [f"{name} is only used when {key} is {' or '.join(map(str, allowed))}, "
                            f"got {key}={elsewhere!r}; remove {name}"], problems
        assert cross_check({**applies, key: elsewhere, name: param.default}) == []  # the default is no choice


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_each_entry_is_documented_and_its_default_is_valid(name: str) -> None:
    param = CATALOG[name]
    assert param.name == name and param.help
    assert param.check(param.default) is None
    for key, allowed in param.requires.items():
        assert set(allowed) <= set(CATALOG[key].choices or ()), (name, key)


def test_defaults_hold_only_unconditional_settings() -> None:
    values = defaults()
    assert set(values) == {name for name in CATALOG if not CATALOG[name].requires}
    assert cross_check(values) == []


def test_resolve_fills_conditional_defaults_and_copies_lists() -> None:
    full = resolve({"optimizer": "sgd", "custom": 1})
    assert set(full) == set(CATALOG) | {"custom"}
    assert full["momentum"] == CATALOG["momentum"].default and full["custom"] == 1 and full["optimizer"] == "sgd"
    milestones = list(CATALOG["milestones"].default)
    full["milestones"].append(99)
    assert resolve({})["milestones"] == CATALOG["milestones"].default == milestones  # nothing shared


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_resolved_defaults_of_every_combination_check_clean(optimizer: str, scheduler: str) -> None:
    assert cross_check(resolve({"optimizer": optimizer, "scheduler": scheduler})) == []


@pytest.mark.parametrize(
    ("name", "hp", "active"),
    [("momentum", {"optimizer": "rmsprop"}, True), ("momentum", {"optimizer": "adam"}, False),
     ("momentum", {}, False), ("beta1", {}, True), ("amsgrad", {"optimizer": "lamb"}, False),
     ("min_lr", {"scheduler": "plateau"}, True), ("base_batch_size", {"lr_scaling": "sqrt"}, True),
     ("base_batch_size", {}, False), ("lr", {}, True)],
)
def test_is_active_follows_requires(name: str, hp: dict[str, Any], active: bool) -> None:
    assert is_active(name, hp) is active


@pytest.mark.parametrize(
    ("hp", "expected"),
    [({"lr": 0.1}, 0.1),
     ({"lr": 0.1, "lr_scaling": "linear", "batch_size": 32, "base_batch_size": 128}, 0.025),
     ({"lr": 0.1, "lr_scaling": "sqrt", "batch_size": 512, "base_batch_size": 128}, 0.2)],
)
def test_scaled_lr(hp: dict[str, Any], expected: float) -> None:
    assert scaled_lr(hp) == pytest.approx(expected)


def test_scaled_lr_rejects_unknown_scaling() -> None:
    with pytest.raises(ValueError, match=r"lr_scaling must be one of none, linear, sqrt, got 'log'"):
        scaled_lr({"lr_scaling": "log"})


@pytest.mark.parametrize(
    ("hp", "expected"),
    [
        ({"optimizer": "adam", "momentum": 0.5},
         "momentum is only used when optimizer is sgd or rmsprop, got optimizer='adam'; remove momentum"),
        ({"optimizer": "sgd", "dampening": 0.1, "beta1": 0.8},
         "beta1 is only used when optimizer is adam or adamw or adamax or nadam or radam or lamb, "
         "got optimizer='sgd'; remove beta1"),
        ({"scheduler": "cosine", "gamma": 0.5},
         "gamma is only used when scheduler is step or multistep, got scheduler='cosine'; remove gamma"),
        ({"warmup_epochs": 5, "epochs": 3}, "warmup_epochs (5) must be smaller than epochs (3)"),
        ({"optimizer": "sgd", "nesterov": True, "momentum": 0.9, "dampening": 0.5},
         "nesterov needs momentum > 0 and dampening 0, got momentum=0.9, dampening=0.5; "
         "set nesterov false or change them"),
        ({"optimizer": "rprop", "weight_decay": 0.01},
         "weight_decay must be 0 for optimizer rprop (it has none), got 0.01"),
        ({"scheduler": "step", "step_size": 8, "epochs": 10, "warmup_epochs": 2.5},
         "step_size (8) must be smaller than epochs - warmup_epochs (7.5), otherwise lr never decays; "
         "lower step_size or use scheduler constant"),
        ({"scheduler": "cosine_restarts", "restart_epochs": 10, "epochs": 10},
         "restart_epochs (10) must be smaller than epochs - warmup_epochs (10), otherwise no restart "
         "happens; lower restart_epochs or use scheduler cosine"),
        ({"scheduler": "linear", "min_lr": 0.01, "lr": 0.02, "lr_scaling": "linear", "batch_size": 16,
          "base_batch_size": 64}, "min_lr (0.01) must not exceed the (scaled) lr (0.005)"),
        ({"optimizer": "lamb2"}, "optimizer: expected one of sgd, adam, adamw, rmsprop, adagrad, adadelta, "
         "adamax, nadam, radam, rprop, asgd, lbfgs, lamb, got 'lamb2' (optimizer algorithm)"),
        ({"epochs": 2.5}, "epochs: expected an integer, got 2.5 (number of passes over the training set)"),
        ({"scheduler": "multistep", "milestones": "5,8"},
         "milestones: expected a list of integers, got '5,8' (multistep: epochs (counted after warmup) at "
         "which lr is multiplied by gamma)"),
    ],
)
def test_cross_check_names_fields_values_and_fix(hp: dict[str, Any], expected: str) -> None:
    assert cross_check(hp) == [expected]


def test_cross_check_reports_every_milestone_problem() -> None:
    problems = cross_check({"scheduler": "multistep", "milestones": [9, 0, 12], "epochs": 10})
    assert problems == [
        "milestones must be strictly increasing, got [9, 0, 12]",
        "milestones must lie between 0 and epochs - warmup_epochs (10) exclusive, got [0, 12] in [9, 0, 12]",
    ]
    assert cross_check({"scheduler": "multistep", "milestones": []}) == [
        "milestones must list at least one epoch for scheduler multistep, got []"]


def test_cross_check_leaves_unknown_keys_and_default_valued_unused_settings_alone() -> None:
    assert cross_check({"optimizer": "adam", "momentum": 0.9, "my_task_flag": "x"}) == []


@pytest.mark.parametrize(
    "hp",
    [{"scheduler": "multistep", "milestones": [2, 9], "epochs": 10},
     {"scheduler": "step", "step_size": 9, "epochs": 10},
     {"scheduler": "cosine", "warmup_epochs": 9.5, "epochs": 10},
     {"optimizer": "sgd", "nesterov": True, "momentum": 0.1}],
)
def test_cross_check_accepts_the_edges(hp: dict[str, Any]) -> None:
    assert cross_check(hp) == []
