"""Validation metrics computed from predictions in torch: classification (macro) and regression."""

from __future__ import annotations

import torch


def classification_metrics(predicted: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1 of class predictions.

    Macro averages run over the classes present in ``y`` or ``predicted`` (as scikit-learn's); a class
    never predicted has precision 0, one never present has recall 0.

    Returns:
        ``val_accuracy``, ``val_precision``, ``val_recall``, ``val_f1``.
    """
    n = max(n_classes, int(y.max()) + 1, int(predicted.max()) + 1)
    confusion = torch.bincount(y * n + predicted, minlength=n * n).reshape(n, n).double()  # rows: true
    tp, actual, guessed = confusion.diag(), confusion.sum(1), confusion.sum(0)
    present = (actual + guessed) > 0
    precision = torch.where(guessed > 0, tp / guessed.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12), torch.zeros_like(tp))
    return {
        "val_accuracy": float(tp.sum() / len(y)),
        "val_precision": float(precision[present].mean()),
        "val_recall": float(recall[present].mean()),
        "val_f1": float(f1[present].mean()),
    }


def regression_metrics(predicted: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Mean absolute error and R^2 (uniform average over targets, as scikit-learn's).

    Returns:
        ``val_mae``, ``val_r2`` (a target that is constant in ``y`` counts as R^2 0).
    """
    predicted, y = predicted.double(), y.double()
    residual = ((y - predicted) ** 2).sum(0)
    spread = ((y - y.mean(0)) ** 2).sum(0)
    r2 = torch.where(spread > 0, 1 - residual / spread.clamp(min=1e-300), torch.zeros_like(spread))
    return {"val_mae": float((y - predicted).abs().mean()), "val_r2": float(r2.mean())}
