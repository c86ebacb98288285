"""hpo.diagnosis: loss floors (label smoothing, accuracy), noise- and size-aware confidence, borderline verdicts,
and the context a ``--history`` file may carry."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hpo.cli import main
from hpo.diagnosis import diagnose
from hpo.diagnosis._features import smoothing_floor

T = np.arange(20, dtype=float)


def _smoothed_fit(floor: float) -> dict[str, list[float]]:
    """A model trained with label smoothing: training loss levels off just above its floor, the plain
    validation cross-entropy goes far lower, validation loss never rises."""
    return {"train_loss": list(floor + 0.03 + (2.3 - floor) * np.exp(-0.4 * T)),
            "val_loss": list(0.3 + 1.9 * np.exp(-0.4 * T))}


def _accuracies(end: float) -> dict[str, list[float]]:
    acc = list(0.1 + (end - 0.1) * (1 - np.exp(-0.5 * T)))
    return {"train_accuracy": acc, "val_accuracy": [a - 0.005 for a in acc]}


# -- loss floors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eps", "k"), [(0.1, 10), (0.2, 10), (0.1, 2), (0.3, 100)])
def test_smoothing_floor_is_the_least_cross_entropy_on_smoothed_labels(eps, k):
    q = np.full(k, eps / k)
    q[0] += 1 - eps
    floor = smoothing_floor(eps, k)
    assert floor == pytest.approx(float(-(q * np.log(q)).sum()))  # the entropy of the smoothed target
    rng = np.random.default_rng(0)
    for _ in range(50):  # no prediction gets below it
        p = rng.dirichlet(np.ones(k)) * 0.3 + q * 0.7
        assert float(-(q * np.log(p)).sum()) > floor
    assert smoothing_floor(0.0, 10) == 0.0 and smoothing_floor(0.1, 1) == 0.0


def test_label_smoothing_floor_turns_an_underfit_reading_into_a_good_fit():
    h = _smoothed_fit(smoothing_floor(0.2, 10))  # floor 0.87: the loss ends at 40% of chance level
    plain = diagnose(h, n_classes=10)
    assert plain.verdict == "underfitting"
    smoothed = diagnose(h, n_classes=10, params={"label_smoothing": 0.2})
    assert smoothed.verdict == "good_fit", smoothed.summary
    assert smoothed.evidence["decided_by"] == "validation_loss"
    assert smoothed.evidence["train_loss_floor"] == pytest.approx(0.8669, abs=1e-3)
    assert "label smoothing 0.2 over 10 classes" in smoothed.evidence["train_loss_floor_source"]
    assert smoothed.evidence["train_progress"] > 0.95 > plain.evidence["train_progress"] + 0.3


def test_high_train_and_val_accuracy_is_never_underfitting_whatever_the_loss():
    flat = {"train_loss": list(1.2 + 1.1 * np.exp(-0.6 * T)), "val_loss": list(1.21 + 1.0 * np.exp(-0.6 * T))}
    assert diagnose(flat, n_classes=10).verdict == "underfitting"  # by the loss alone: held back
    d = diagnose(flat | _accuracies(0.995), n_classes=10)
    assert d.verdict == "good_fit"
    assert d.evidence["decided_by"] == "accuracy"
    assert "accuracy is high" in d.summary and "99%" in d.summary
    assert diagnose(flat | _accuracies(0.80), n_classes=10).verdict == "underfitting"  # 80% decides nothing


def test_high_accuracy_does_not_hide_overfitting():
    val = 0.3 + 1.7 * np.exp(-0.5 * T) + 0.04 * np.maximum(0, T - 6)
    over = {"train_loss": list(2.0 * 0.7**T), "val_loss": list(val)}
    d = diagnose(over | _accuracies(0.99), n_classes=10)
    assert d.verdict == "overfitting" and d.evidence["decided_by"] == "validation_loss_rise"


# -- noise, validation-set size, borderline ----------------------------------------------------------


def _rising(rise: float, noise: float = 0.0, seed: int = 0) -> dict[str, list[float]]:
    """Training loss falls to 0.1; validation loss bottoms out near epoch 8 then climbs by ``rise`` (relative)."""
    val = 0.5 + 1.5 * np.exp(-0.6 * T) + 0.5 * rise * np.maximum(0.0, T - 8) / 11
    val = val * (1 + noise * np.random.default_rng(seed).standard_normal(len(T)))
    return {"train_loss": list(0.1 + 1.9 * np.exp(-0.35 * T)), "val_loss": list(val)}


def test_a_small_validation_set_makes_a_rise_weak_evidence():
    h = _rising(0.10)
    big = diagnose(h, val_size=5000)
    assert big.verdict == "overfitting"
    small = diagnose(h, val_size=40)  # the mean loss over 40 examples is only good to ~16%
    assert small.verdict != "overfitting"
    assert small.confidence <= 0.6
    assert small.evidence["val_size"] == 40 and small.evidence["val_sampling_error"] == pytest.approx(0.1581, 1e-3)
    assert big.confidence > small.confidence


def test_a_noisy_validation_curve_needs_a_larger_rise():
    assert diagnose(_rising(0.12)).verdict == "overfitting"
    noisy = diagnose(_rising(0.12, noise=0.04, seed=3))
    assert noisy.verdict != "overfitting" or "borderline" in noisy.findings
    assert noisy.evidence["val_noise"] > 0.02


def test_confidence_falls_with_the_noise_of_the_validation_curve():
    clean, noisy = diagnose(_rising(0.0)), diagnose(_rising(0.0, noise=0.15, seed=2))
    assert clean.verdict == noisy.verdict == "good_fit"
    assert noisy.confidence <= 0.95 - 2 * noisy.evidence["val_noise"] + 0.005 < clean.confidence
    assert "noisy_validation" in noisy.findings and "noisy_validation" not in clean.findings


def test_a_family_of_curves_changes_verdict_only_through_borderline_cases():
    results = [diagnose(_rising(r)) for r in np.linspace(0.0, 0.3, 61)]
    verdicts = [d.verdict for d in results]
    assert verdicts[0] == "good_fit" and verdicts[-1] == "overfitting"
    assert "borderline" not in results[0].findings and "borderline" not in results[-1].findings
    flips = [i for i in range(1, len(results)) if verdicts[i] != verdicts[i - 1]]
    assert flips, "the family crosses the overfitting threshold"
    for i in flips:
        for d in (results[i - 1], results[i]):
            assert "borderline" in d.findings, (i, d.verdict, d.evidence)
            assert d.confidence <= 0.6 and d.summary.startswith("Borderline between")
            assert set(d.evidence["borderline_with"]) & {"good_fit", "overfitting"}


def test_a_small_perturbation_of_a_borderline_curve_never_flips_the_verdict_silently():
    family = [(r, diagnose(_rising(r))) for r in np.linspace(0.0, 0.3, 61)]
    rise, base = next((r, d) for r, d in family if "borderline" in d.findings)
    seen = set()
    for seed in range(30):
        rng = np.random.default_rng(seed)
        h = _rising(rise)
        h = {k: list(np.asarray(v) * (1 + 0.003 * rng.standard_normal(len(v)))) for k, v in h.items()}
        d = diagnose(h)
        seen.add(d.verdict)
        if d.verdict != base.verdict:
            assert "borderline" in d.findings and "borderline" in base.findings
    assert base.verdict in seen


def test_a_clear_verdict_is_not_called_borderline():
    d = diagnose(_rising(0.6), val_size=5000)
    assert d.verdict == "overfitting" and "borderline" not in d.findings and d.confidence > 0.6


# -- the --history file's context --------------------------------------------------------------------


def _write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "run.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    return p


def test_history_file_context_reaches_the_diagnosis(tmp_path, capsys):
    h = _smoothed_fit(smoothing_floor(0.2, 10))
    assert main(["diagnose", "--history", str(_write(tmp_path, {**h, "n_classes": 10})), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "underfitting"
    doc = {**h, "params": {"label_smoothing": 0.2, "lr": 0.001}, "n_classes": 10, "val_size": 1000}
    assert main(["diagnose", "--history", str(_write(tmp_path, doc)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "good_fit" and out["evidence"]["val_size"] == 1000
    wrapped = {"history": h, "params": {"label_smoothing": 0.2}, "n_classes": 10, "label": "good_fit"}
    assert main(["diagnose", "--history", str(_write(tmp_path, wrapped)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "good_fit"


@pytest.mark.parametrize(
    ("context", "match"),
    [
        ({"params": [0.1]}, r"params must be an object .* got list"),
        ({"params": {"model": {"hidden": 3}}}, r"params\.model must be a number, string, boolean or null, got dict"),
        ({"params": {"label_smoothing": 1.5}}, r"params\.label_smoothing must be a number in \[0, 1\), got 1\.5"),
        ({"params": {"label_smoothing": "a"}}, r"params\.label_smoothing must be a number in \[0, 1\), got 'a'"),
        ({"n_classes": -1}, r"n_classes must be an integer >= 0 \(the number of classes; 0 for regression\), got -1"),
        ({"n_classes": 2.5}, r"n_classes must be an integer >= 0 .* got 2\.5"),
        ({"val_size": 0}, r"val_size must be an integer >= 1 \(validation examples per val_loss value\), got 0"),
        ({"val_size": True}, r"val_size must be an integer >= 1 .* got True"),
    ],
)
def test_bad_history_context_exits_2_naming_the_field(tmp_path, capsys, context, match):
    path = _write(tmp_path, {"train_loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.2, 0.7], **context})
    assert main(["diagnose", "--history", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert re.search(match, err), err


def test_nan_stays_out_of_the_new_evidence():
    d = diagnose(_smoothed_fit(0.5) | _accuracies(0.99), n_classes=10, params={"label_smoothing": 0.1}, val_size=40)
    out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert out["evidence"]["decided_by"] in ("accuracy", "validation_loss")
    assert not any(isinstance(v, float) and math.isnan(v) for v in out["evidence"].values())
