"""trainers.loop.fit: each loop feature on real small models and data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from sklearn.metrics import f1_score, precision_score, r2_score, recall_score
from torch import nn

from trainers.catalog import cross_check
from trainers.data import Augment, TaskData
from trainers.loop import Diverged, FitResult, fit
from trainers.metrics import classification_metrics, regression_metrics
from trainers.models import build_model, initialise
from trainers.tasks import load_task

torch.set_num_threads(1)


class Recorder:
    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []
        self.checkpoints: list[dict[str, Any] | None] = []

    def __call__(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        self.metrics.append(metrics)
        self.checkpoints.append(checkpoint)


@pytest.fixture(scope="module")
def cancer() -> TaskData:
    data: TaskData = load_task("breast_cancer", {})
    return data


def _fit(hp: dict[str, Any], data: TaskData, **kw: Any) -> Recorder:
    rec = Recorder()
    fit({"hidden": 16, "epochs": 2, "lr": 0.01, **hp}, rec, data=data, **kw)
    return rec


class _Loud(nn.Module):
    """A linear classifier whose logits are multiplied by 100: its gradients are far beyond the clip bounds."""

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_inputs, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 100 * self.linear(x)


def _loud(config: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    return _Loud(input_shape[0], n_outputs)


# each training feature set to "off": what the loop did before the feature existed
_OFF = {"accumulate_steps": 1, "clip_norm": 0.0, "clip_value": 0.0, "precision": "fp32", "patience": 0,
        "l1": 0.0, "l2": 0.0, "label_smoothing": 0.0, "batch_norm": False, "init": "default", "input_noise": 0.0,
        "shift": 0, "folds": 0, "val_fraction": 0.2}


def _timeless(rec: Recorder) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if k not in ("epoch_seconds", "latency_ms")} for m in rec.metrics]


def test_a_config_without_the_new_settings_trains_as_with_them_off(cancer: TaskData) -> None:
    # a default that switched a feature on (clipping, smoothing, noise, bf16, ...) changes the numbers;
    # the loud model's gradients are large enough that any clipping would show
    assert _timeless(_fit({}, cancer)) == _timeless(_fit(_OFF, cancer))
    assert _timeless(_fit({}, cancer, build=_loud)) == _timeless(_fit(_OFF, cancer, build=_loud))


def test_classification_reports_macro_metrics(cancer: TaskData) -> None:
    rec = _fit({}, cancer)
    last = rec.metrics[-1]
    assert {"val_precision", "val_recall", "val_f1", "train_accuracy"} <= set(last)
    assert 0.5 < last["val_accuracy"] <= 1 and "stopped_early" not in last


def test_macro_metrics_match_sklearn() -> None:
    gen = torch.Generator().manual_seed(0)
    y, predicted = torch.randint(0, 4, (200,), generator=gen), torch.randint(0, 3, (200,), generator=gen)
    got = classification_metrics(predicted, y, 4)
    for name, fn in (("val_precision", precision_score), ("val_recall", recall_score), ("val_f1", f1_score)):
        assert got[name] == pytest.approx(fn(y, predicted, average="macro", zero_division=0))
    target, guess = torch.randn(50), torch.randn(50)
    assert regression_metrics(guess, target)["val_r2"] == pytest.approx(r2_score(target, guess))


def test_accumulation_steps_the_optimizer_once_per_group(cancer: TaskData) -> None:
    # 364 training rows / batch 64 = 6 batches; 4 per step -> 2 steps; onecycle counts steps, so a
    # wrong count would end the cycle elsewhere; here we count optimizer steps directly.
    steps: list[int] = []
    original = torch.optim.Adam.step

    def counting(self: torch.optim.Optimizer, *a: Any, **k: Any) -> Any:
        steps.append(1)
        return original(self, *a, **k)

    torch.optim.Adam.step = counting  # type: ignore[method-assign]
    try:
        _fit({"accumulate_steps": 4, "epochs": 1}, cancer)
    finally:
        torch.optim.Adam.step = original  # type: ignore[method-assign]
    assert len(cancer.y_train) == 364 and len(steps) == 2  # the last step takes the 2 batches left


def _one_sgd_step(hp: dict[str, Any], data: TaskData) -> torch.Tensor:
    """The change of every weight in one epoch of one plain SGD step (lr 1, the whole split as one batch):
    minus the gradient as the loop applied it, clipped or not."""
    built: list[tuple[nn.Module, torch.Tensor]] = []

    def build(config: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        model = _loud(config, input_shape, n_outputs)
        built.append((model, nn.utils.parameters_to_vector(model.parameters()).detach().clone()))
        return model

    step = {"optimizer": "sgd", "momentum": 0.0, "lr": 1.0, "batch_size": len(data.y_train) + 1, "epochs": 1}
    fit({**step, **hp}, Recorder(), data=data, build=build)
    (model, before), = built
    return nn.utils.parameters_to_vector(model.parameters()).detach() - before


def test_clip_norm_and_clip_value_bound_the_step(cancer: TaskData) -> None:
    free = _one_sgd_step({}, cancer)
    assert free.norm() > 5 and free.abs().max() > 1  # without clipping the step is large
    assert _one_sgd_step({"clip_norm": 1.0}, cancer).norm() == pytest.approx(1.0, rel=1e-4)
    by_value = _one_sgd_step({"clip_value": 5.0}, cancer)
    assert (free.abs() < 5).any() and (free.abs() > 5).any()  # some elements to clip, some to leave
    torch.testing.assert_close(by_value, free.clamp(-5.0, 5.0), rtol=0, atol=1e-5)  # element by element
    both = _one_sgd_step({"clip_value": 5.0, "clip_norm": 1.0}, cancer)  # by value first, then by norm
    torch.testing.assert_close(both, by_value / by_value.norm(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("precision", "dtype"),
                         [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_precision_sets_the_forward_dtype_and_still_trains(cancer: TaskData, precision: str,
                                                           dtype: torch.dtype) -> None:
    seen: set[torch.dtype] = set()

    def build(config: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        model = nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, n_outputs))
        model.register_forward_hook(lambda module, inputs, out: seen.add(out.dtype))
        return model

    rec = _fit({"precision": precision, "clip_norm": 1.0, "accumulate_steps": 2}, cancer, build=build)
    assert seen == {dtype}  # training and evaluation both ran under the autocast (none for fp32)
    assert rec.metrics[-1]["val_accuracy"] > 0.8  # fp16 on CPU needs no GradScaler to learn this
    weights = rec.checkpoints[0]["model_state"]  # type: ignore[index]
    assert {w.dtype for w in weights.values()} == {torch.float32}  # autocast leaves the weights fp32


def _epochs_until_patience(cancer: TaskData, goal: str, **hp: Any) -> tuple[Recorder, FitResult]:
    # the "epoch" metric rises by exactly 1 per epoch: a known sequence to watch, whatever training does
    rec = Recorder()
    result = fit({"hidden": 8, "epochs": 6, "lr": 0.01, **hp}, rec, data=cancer, metric="epoch", goal=goal)
    return rec, result


def test_patience_counts_epochs_without_an_improvement_beyond_min_delta(cancer: TaskData) -> None:
    rec, result = _epochs_until_patience(cancer, "minimize", patience=2)
    assert [m["epoch"] for m in rec.metrics] == [1, 2, 3]  # epoch 1 is best; 2 and 3 do not improve
    assert result.epochs_run == 3 and result.best_epoch == 1
    assert rec.metrics[-1]["stopped_early"] == 1.0
    assert all("stopped_early" not in m for m in rec.metrics[:-1])
    rec, _ = _epochs_until_patience(cancer, "maximize", patience=2, min_delta=0.5)
    assert len(rec.metrics) == 6 and "stopped_early" not in rec.metrics[-1]  # +1 per epoch improves
    # an improvement must exceed min_delta over the best so far (not over the previous epoch): with 1.5,
    # epoch 3 is 2 above the best (epoch 1) and resets the wait; with 2.0 nothing ever exceeds it
    rec, _ = _epochs_until_patience(cancer, "maximize", patience=2, min_delta=1.5)
    assert len(rec.metrics) == 6
    rec, _ = _epochs_until_patience(cancer, "maximize", patience=2, min_delta=2.0)
    assert len(rec.metrics) == 3
    rec, _ = _epochs_until_patience(cancer, "minimize", patience=0)
    assert len(rec.metrics) == 6  # patience 0: never stops


def test_patience_stops_a_finished_trial_and_says_so(cancer: TaskData) -> None:
    rec = _fit({"epochs": 30, "lr": 0.05, "patience": 2, "min_delta": 0.05}, cancer,
               metric="val_accuracy", goal="maximize")
    assert len(rec.metrics) < 30
    assert rec.metrics[-1]["stopped_early"] == 1.0
    assert all("stopped_early" not in m for m in rec.metrics[:-1])


def test_l1_and_l2_penalties_shrink_weights(cancer: TaskData) -> None:
    def weight_norm(hp: dict[str, Any]) -> float:
        rec = _fit({"epochs": 3, "lr": 0.01, **hp}, cancer)
        state = rec.checkpoints[-1] or next(c for c in reversed(rec.checkpoints) if c)
        return sum(float(v.abs().sum()) for k, v in state["model_state"].items() if k.endswith("weight"))

    plain = weight_norm({})
    assert weight_norm({"l1": 0.01}) < plain
    assert weight_norm({"l2": 0.01}) < plain


def test_label_smoothing_raises_training_loss_only(cancer: TaskData) -> None:
    plain, smooth = _fit({}, cancer).metrics[-1], _fit({"label_smoothing": 0.3}, cancer).metrics[-1]
    assert smooth["train_loss"] > plain["train_loss"]


@pytest.mark.parametrize("scheme", ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                                    "orthogonal", "normal", "constant"])
def test_init_schemes_touch_weight_matrices_only(scheme: str) -> None:
    model = build_model("mlp", (5,), 3, {"hidden": 8, "layers": 1, "dropout": 0.0, "batch_norm": True})
    bias_before = model[1].bias.clone()
    initialise(model, scheme, std=0.5, value=0.25)
    assert torch.equal(model[1].bias, bias_before)
    if scheme == "constant":
        assert torch.all(model[1].weight == 0.25)
    if scheme == "normal":
        assert 0.3 < float(model[1].weight.detach().std()) < 0.7
    with pytest.raises(ValueError, match="unknown init 'lecun'"):
        initialise(model, "lecun")


def test_batch_norm_switches() -> None:
    hp = {"hidden": 8, "layers": 2, "dropout": 0.0}
    has_bn = lambda m: any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules())  # noqa: E731
    assert not has_bn(build_model("mlp", (5,), 2, hp))
    assert has_bn(build_model("mlp", (5,), 2, {**hp, "batch_norm": True}))
    assert has_bn(build_model("cnn", (1, 12), 2, hp))
    assert not has_bn(build_model("cnn", (1, 12), 2, {**hp, "conv_batch_norm": False}))


def test_sequence_models_and_their_rules() -> None:
    x = torch.randn(3, 1, 12)
    hp = {"hidden": 8, "layers": 2, "dropout": 0.1, "heads": 2}
    assert build_model("gru", (1, 12), 4, hp)(x).shape == (3, 4)
    assert build_model("transformer", (1, 12), 4, hp)(x).shape == (3, 4)
    with pytest.raises(ValueError, match="needs sequence inputs"):
        build_model("gru", (5,), 2, hp)
    problems = cross_check({"model": "transformer", "hidden": 10, "heads": 4})
    assert problems and "hidden (10) must be divisible by heads (4)" in problems[0]
    assert "needs a GradScaler" in cross_check({"precision": "fp16", "optimizer": "lbfgs"})[0]
    assert "folds must be 0" in cross_check({"folds": 1})[0]


def test_augmentation_shifts_and_noises_training_batches_only() -> None:
    x = torch.arange(10.0).repeat(4, 1, 1)  # (4, 1, 10)
    shifted = Augment(0.0, 3, torch.Generator().manual_seed(0))(x)
    for row in shifted[:, 0]:
        offset = int((10 - row[0]) % 10)  # row[j] = x[j - offset]
        assert offset in (0, 1, 2, 3, 7, 8, 9)  # at most 3 steps either way
        assert torch.equal(row, torch.roll(x[0, 0], offset))
    noisy = Augment(0.5, 0, torch.Generator().manual_seed(0))(x)
    assert 0.3 < float((noisy - x).std()) < 0.7
    assert Augment(0.0, 0, torch.Generator())(x) is x


def test_regression_reports_mae_and_r2_without_accuracy() -> None:
    rec = Recorder()
    fit({"hidden": 16, "epochs": 3, "lr": 0.01}, rec, task="diabetes")
    last = rec.metrics[-1]
    assert {"val_mae", "val_r2", "val_loss", "train_loss"} <= set(last)
    assert not any("accuracy" in k for k in last)
    assert last["val_r2"] > 0


def test_cross_validation_runs_k_folds_in_lockstep(cancer: TaskData) -> None:
    rec = _fit({"folds": 3}, cancer, metric="val_accuracy", goal="maximize")
    assert len(rec.metrics) == 2
    last = rec.metrics[-1]
    assert last["val_accuracy_std"] >= 0 and "val_f1_std" in last and "lr_std" not in last
    checkpoint = next(c for c in rec.checkpoints if c)
    assert len(checkpoint["fold_states"]) == 3
    folds = cancer.folds(3, 0)
    sizes = [len(f.y_val) for f in folds]
    assert sum(sizes) == len(cancer.y_train) + len(cancer.y_val) and max(sizes) - min(sizes) <= 1
    for f in folds:  # stratified: every fold keeps the class ratio within a couple of rows
        assert abs(float(f.y_val.float().mean()) - float(cancer.y_train.float().mean())) < 0.02


def test_divergence_raises(cancer: TaskData) -> None:
    with pytest.raises(Diverged, match="loss became"):
        _fit({"optimizer": "sgd", "lr": 1e6, "weight_decay": 1e6, "epochs": 3}, cancer)


def test_fit_needs_task_or_data() -> None:
    with pytest.raises(ValueError, match="needs a task name or data"):
        fit({}, Recorder())


def test_own_model_builder_gets_config_shape_and_outputs(cancer: TaskData) -> None:
    seen: list[tuple[Any, ...]] = []

    def build(config: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> torch.nn.Module:
        seen.append((config["hidden"], input_shape, n_outputs))
        return torch.nn.Linear(input_shape[0], n_outputs)

    rec = _fit({"folds": 2}, cancer, build=build)
    assert seen == [(16, (30,), 2)] * 2 and len(rec.metrics) == 2


class _Crash(Exception):
    """The process 'dies' right after an epoch's snapshot was saved."""


class _MemoryState:
    """A TrainState in memory (hpo.trial_state keeps the same snapshot in a file)."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.best: dict[str, Any] | None = None
        self.crash_after = crash_after

    def load(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return self.snapshot, self.best

    def save(self, snapshot: dict[str, Any], best_checkpoint: dict[str, Any] | None) -> None:
        self.snapshot, self.best = snapshot, best_checkpoint or self.best
        if self.crash_after is not None and snapshot["epoch"] == self.crash_after:
            raise _Crash


def test_a_trial_continued_from_its_saved_epoch_reports_what_an_uninterrupted_one_does(cancer: TaskData) -> None:
    hp = {"epochs": 4, "training_signals": True}
    whole = _fit(hp, cancer)
    state = _MemoryState(crash_after=2)
    with pytest.raises(_Crash):
        _fit(hp, cancer, state=state)
    state.crash_after = None
    continued = _fit(hp, cancer, state=state)  # replays epochs 1-2, trains 3-4
    assert _timeless(continued) == _timeless(whole)
    # the values at initialisation went out once, with epoch 1; the restored weights do not measure them again
    assert [sorted(k for k in m if "/init_" in k) != [] for m in continued.metrics] == [True, False, False, False]
