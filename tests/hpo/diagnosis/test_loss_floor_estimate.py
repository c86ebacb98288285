"""hpo.diagnosis: the loss floor estimated from training accuracy (noisy labels), on real labelled curves
(tests/data/diagnosis_curves) and on synthetic edge cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hpo.diagnosis import Diagnosis, diagnose, read_history_file
from hpo.diagnosis._features import accuracy_floor, smoothing_floor

CURVES = Path(__file__).resolve().parents[2] / "data" / "diagnosis_curves"
T = np.arange(20, dtype=float)


def _judge(name: str) -> Diagnosis:
    found = read_history_file(CURVES / name)
    return diagnose(found.history, params=found.params, n_classes=found.n_classes, val_size=found.val_size)


@pytest.mark.parametrize(("eta", "k"), [(0.2, 10), (0.4, 10), (0.1, 2), (0.3, 5)])
def test_accuracy_floor_is_the_least_loss_on_symmetrically_noisy_labels(eta, k):
    # a model that knows every clean label is right on 1 - eta + eta/K of the noisy ones; its best loss is the
    # entropy of that target: the label-smoothing floor with eps = eta
    assert accuracy_floor(1 - eta + eta / k, k) == pytest.approx(smoothing_floor(eta, k))
    assert accuracy_floor(0.82, 10) == pytest.approx(0.8669, abs=1e-4)


def test_accuracy_floor_at_its_ends():
    assert accuracy_floor(1.0, 10) == 0.0
    assert accuracy_floor(0.1, 10) == pytest.approx(math.log(10))  # chance: the uniform prediction
    assert accuracy_floor(0.05, 10) == pytest.approx(math.log(10))  # below chance: no lower than ln K
    assert accuracy_floor(0.9, 1) == 0.0


# -- real curves ---------------------------------------------------------------------------------------


def test_a_real_noisy_label_good_fit_is_judged_by_its_estimated_floor():
    # CNN on MNIST-1D with 20% of its labels replaced by random classes, early-stopped: 75% training and 77%
    # validation accuracy, the two losses level with each other at 1.12 (main called it underfitting)
    d = _judge("field/goodfit__mnist1d_cnn_noisy20_s0.json")
    ev = d.evidence
    assert d.verdict == "good_fit"
    assert ev["decided_by"] == "loss_floor_estimate"
    assert ev["accuracy_implied_loss"] == pytest.approx(accuracy_floor(ev["train_accuracy_end"], 10), rel=1e-3)
    assert ev["train_loss_vs_accuracy_implied"] == pytest.approx(0.9966, abs=1e-3)
    assert ev["train_accuracy_above_chance"] == pytest.approx(0.7175, abs=1e-3)
    assert ev["train_loss_floor"] == ev["accuracy_implied_loss"]
    assert ev["train_loss_floor_source"].startswith("estimated: the loss of a model equally unsure")
    assert ev["train_progress"] == pytest.approx(0.5128, abs=1e-3)  # towards zero: what read as underfitting
    assert ev["train_progress_to_accuracy_implied"] > 0.99
    # the estimate cannot tell noisy labels from a model too small to do better, so the verdict says so
    assert "borderline" in d.findings and ev["borderline_with"] == ["underfitting"] and d.confidence <= 0.6
    assert "label_noise_floor" in d.findings
    assert d.summary.startswith("Borderline between good_fit and underfitting: it rests on a loss floor estimated")
    assert any("check a sample of the labels" in r for r in d.recommendations)


def test_the_other_seed_of_the_noisy_label_good_fit_keeps_its_verdict_and_reports_the_floor():
    d = _judge("field/goodfit__mnist1d_cnn_noisy20_s1.json")
    assert d.verdict == "good_fit" and d.evidence["decided_by"] == "validation_loss"  # its losses had separated
    assert "label_noise_floor" in d.findings and "borderline" not in d.findings
    assert d.evidence["train_loss_floor"] == pytest.approx(1.069, abs=1e-3)


def _underfits() -> list[str]:
    return sorted(str(p.relative_to(CURVES)) for p in CURVES.glob("*/*.json")
                  if json.loads(p.read_text())["label"] == "underfitting")


def test_a_capacity_limited_curve_stays_underfitting_with_no_estimated_floor():
    # a CNN of 2 channels: 21% training accuracy; its loss matches what that accuracy implies (0.94), but an
    # accuracy barely above chance explains any loss near ln K, so the estimate does not apply
    d = _judge("field/capacity__mnist1d_cnn_width2_s0.json")
    ev = d.evidence
    assert d.verdict == "underfitting" and ev["decided_by"] == "training_loss_vs_floor"
    assert ev["train_accuracy_above_chance"] == pytest.approx(0.1227, abs=1e-3)
    assert ev["train_loss_vs_accuracy_implied"] == pytest.approx(0.9383, abs=1e-3)
    assert "train_loss_floor" not in ev and "label_noise_floor" not in d.findings


def test_a_bottleneck_model_sure_of_its_easy_examples_sits_below_the_estimate():
    # an MLP with a 2-unit bottleneck at 33%: its loss is 22% below what its accuracy implies (sure of some
    # examples, unsure of others), unlike labels noisy alike everywhere
    d = _judge("mnist1d/capacity__bottleneck2_adam_s0.json")
    assert d.verdict == "underfitting" and "label_noise_floor" not in d.findings
    assert d.evidence["train_loss_vs_accuracy_implied"] == pytest.approx(0.777, abs=2e-3)


@pytest.mark.parametrize("name", _underfits())
def test_every_labelled_underfit_stays_underfitting_without_the_estimate(name):
    d = _judge(name)
    assert d.verdict == "underfitting", (name, d.evidence)
    assert "label_noise_floor" not in d.findings and d.evidence["decided_by"] != "loss_floor_estimate"


# -- synthetic edge cases ------------------------------------------------------------------------------


def _levelled(loss_end: float, acc_end: float, n: int = 20) -> dict[str, list[float]]:
    """Training and validation loss falling from chance to ``loss_end`` together (no gap), accuracy to
    ``acc_end``: the shape of both a noisy-label fit and a capacity limit."""
    t = np.arange(n, dtype=float)
    loss = loss_end + (math.log(10) - loss_end) * np.exp(-0.4 * t)
    acc = acc_end - (acc_end - 0.1) * np.exp(-0.4 * t)
    return {"train_loss": list(loss), "val_loss": list(loss * 1.01),
            "train_accuracy": list(acc), "val_accuracy": list(acc - 0.005)}


def test_a_loss_at_the_floor_its_accuracy_implies_reads_as_a_fit_and_says_it_is_borderline():
    d = diagnose(_levelled(accuracy_floor(0.8, 10), 0.8), n_classes=10)
    assert d.verdict == "good_fit" and d.evidence["decided_by"] == "loss_floor_estimate"
    assert d.evidence["borderline_with"] == ["underfitting"]


def test_a_loss_well_below_that_floor_is_not_explained_by_noise():
    d = diagnose(_levelled(0.7 * accuracy_floor(0.8, 10), 0.8), n_classes=10)  # ratio 0.7: outside 10%
    assert d.verdict == "underfitting" and d.evidence["decided_by"] == "generalization_gap"
    assert d.evidence["train_loss_vs_accuracy_implied"] == pytest.approx(0.7, abs=0.01)
    assert "label_noise_floor" not in d.findings


def test_too_short_a_history_gives_no_estimate():
    h = {k: v[:2] for k, v in _levelled(accuracy_floor(0.8, 10), 0.8).items()}
    d = diagnose(h, n_classes=10)
    assert d.verdict == "insufficient_data"
    assert "accuracy_implied_loss" not in d.evidence and "train_loss_floor" not in d.evidence


def test_no_estimate_without_training_accuracy_or_the_number_of_classes():
    h = _levelled(accuracy_floor(0.8, 10), 0.8)
    no_acc = diagnose({k: h[k] for k in ("train_loss", "val_loss", "val_accuracy")}, n_classes=10)
    no_k = diagnose(h)
    for d in (no_acc, no_k):
        assert "accuracy_implied_loss" not in d.evidence and "label_noise_floor" not in d.findings


@pytest.mark.parametrize("verdict", ["good_fit", "underfitting", "overfitting"])
def test_the_label_noise_advice_comes_with_the_finding_whatever_the_verdict(verdict):
    from hpo.diagnosis._advice import advise

    with_floor = advise(verdict, ["label_noise_floor"], {}, {"lr": 0.01})
    without = advise(verdict, [], {}, {"lr": 0.01})
    assert any("check a sample of the labels" in r for r in with_floor)
    assert not any("check a sample of the labels" in r for r in without)
