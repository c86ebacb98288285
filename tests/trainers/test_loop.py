"""trainers.loop.fit: each loop feature on real small models and data."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sklearn.metrics import f1_score, precision_score, r2_score, recall_score

from trainers.catalog import CATALOG, cross_check
from trainers.data import Augment, TaskData
from trainers.loop import Diverged, _clipper, _Patience, _precision, fit
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


def test_new_settings_default_to_the_old_behaviour() -> None:
    expected = {"accumulate_steps": 1, "clip_norm": 0.0, "clip_value": 0.0, "precision": "fp32", "patience": 0,
                "l1": 0.0, "l2": 0.0, "label_smoothing": 0.0, "batch_norm": False, "conv_batch_norm": True,
                "init": "default", "input_noise": 0.0, "shift": 0, "folds": 0, "val_fraction": 0.2}
    assert {name: CATALOG[name].default for name in expected} == expected
    assert all(CATALOG[name].help for name in expected)


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
    # 455 training rows / batch 64 = 8 batches; 3 per step -> 3 steps; onecycle counts steps, so a
    # wrong count would end the cycle elsewhere; here we count optimizer steps directly.
    steps: list[int] = []
    original = torch.optim.Adam.step

    def counting(self: torch.optim.Optimizer, *a: Any, **k: Any) -> Any:
        steps.append(1)
        return original(self, *a, **k)

    torch.optim.Adam.step = counting  # type: ignore[method-assign]
    try:
        _fit({"accumulate_steps": 3, "epochs": 1}, cancer)
    finally:
        torch.optim.Adam.step = original  # type: ignore[method-assign]
    assert len(steps) == 3


def test_clipping_bounds_gradients() -> None:
    layer = torch.nn.Linear(4, 4)
    layer.weight.grad = torch.full((4, 4), 10.0)
    layer.bias.grad = torch.full((4,), -10.0)
    _clipper(0.0, 0.5)(layer.parameters())
    assert layer.weight.grad.max() == 0.5 and layer.bias.grad.min() == -0.5
    _clipper(1.0, 0.0)(layer.parameters())
    norm = torch.cat([layer.weight.grad.flatten(), layer.bias.grad]).norm()
    assert norm == pytest.approx(1.0, rel=1e-4)


def test_precision_picks_autocast_and_scaler_off_on_cpu(cancer: TaskData) -> None:
    autocast, scaler = _precision("bf16", torch.device("cpu"))
    with autocast:
        assert torch.nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.bfloat16
    assert not scaler.is_enabled()
    autocast, scaler = _precision("fp32", torch.device("cpu"))
    with autocast:
        assert torch.nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.float32
    rec = _fit({"precision": "bf16", "clip_norm": 1.0, "accumulate_steps": 2}, cancer)
    assert rec.metrics[-1]["val_accuracy"] > 0.5


def test_patience_stops_a_finished_trial_and_says_so(cancer: TaskData) -> None:
    rec = _fit({"epochs": 30, "lr": 0.05, "patience": 2, "min_delta": 0.05}, cancer,
               metric="val_accuracy", goal="maximize")
    assert len(rec.metrics) < 30
    assert rec.metrics[-1]["stopped_early"] == 1.0
    assert all("stopped_early" not in m for m in rec.metrics[:-1])
    stopper = _Patience(2, 0.0, "minimize")
    assert [stopper.should_stop(v) for v in (1.0, 0.5, 0.6, 0.5)] == [False, False, False, True]
    assert not any(_Patience(0, 0.0, "minimize").should_stop(1.0) for _ in range(10))


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
    folds = cancer.folds(3)
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


def test_fp16_on_cpu_autocasts_without_a_scaler(cancer: TaskData) -> None:
    autocast, scaler = _precision("fp16", torch.device("cpu"))
    assert not scaler.is_enabled()
    rec = _fit({"precision": "fp16"}, cancer)
    assert rec.metrics[-1]["val_accuracy"] > 0.5


def test_own_model_builder_gets_config_shape_and_outputs(cancer: TaskData) -> None:
    seen: list[tuple[Any, ...]] = []

    def build(config: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> torch.nn.Module:
        seen.append((config["hidden"], input_shape, n_outputs))
        return torch.nn.Linear(input_shape[0], n_outputs)

    rec = _fit({"folds": 2}, cancer, build=build)
    assert seen == [(16, (30,), 2)] * 2 and len(rec.metrics) == 2
