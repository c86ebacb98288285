"""Which loss-floor estimate the labelled curves support: the three candidates, measured on every labelled curve
that has a training loss, a training accuracy and a number of classes.

- accuracy-implied: training loss / ``accuracy_floor(training accuracy, K)`` (what hpo.diagnosis uses), with the
  training accuracy's share of the way from chance to 1;
- asymptote: training loss end / c, c from a least-squares fit of c + a exp(-b t) to the last two thirds of the
  smoothed training loss (b on a grid): about 1 means "converged to its asymptote";
- memorisation onset: the generalisation gap opened after the validation loss bottomed out
  (``generalization_gap_trend`` >= 0.05 with training loss >= 10% below validation loss).

Usage:  python bench/diagnosis_curves/floor_estimate.py [--data tests/data/diagnosis_curves] [--rows]
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from evaluate import ROOT, is_design, load_curves  # also puts the repository on sys.path

from hpo.diagnosis import diagnose, read_history_file
from hpo.diagnosis._features import smooth


def asymptote(train: list[float | None]) -> float | None:
    """c of the best c + a exp(-b t) fit to the smoothed tail of the training loss; None when too short."""
    y = np.array([v for v in train if v is not None and math.isfinite(v)])
    if len(y) < 6:
        return None
    y = smooth(y)[len(y) // 3:]
    t = np.arange(len(y), dtype=float)
    best: tuple[float, float] | None = None
    for b in np.geomspace(0.01, 3.0, 80):
        x = np.c_[np.ones(len(y)), np.exp(-b * t)]
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        err = float(((x @ coef - y) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, float(coef[0]))
    return best[1] if best else None


def group(c: dict) -> str:
    if c["label"] == "good_fit":
        return "good_fit, noisy labels" if c.get("label_noise") else "good_fit, clean labels"
    if c["label"] == "underfitting":
        return f"underfitting, {c['file'].split('/')[-1].split('__')[0]}"  # capacity, overreg, smallstep
    return c["label"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "diagnosis_curves")
    ap.add_argument("--rows", action="store_true", help="print every curve")
    args = ap.parse_args()
    stats: dict[str, list[tuple[float, float, float | None, bool, bool]]] = defaultdict(list)
    for c in load_curves(args.data):
        found = read_history_file(c["path"])
        d = diagnose(found.history, params=found.params, n_classes=found.n_classes, val_size=found.val_size)
        ev = d.evidence
        if ev.get("train_loss_vs_accuracy_implied") is None or ev.get("train_loss_end") is None:
            continue
        c_fit = asymptote(found.history["train_loss"])
        to_asym = ev["train_loss_end"] / c_fit if c_fit and c_fit > 0 else None
        gap, trend = ev.get("generalization_gap_ratio") or 0, ev.get("generalization_gap_trend") or 0
        memorised = trend >= 0.05 and gap >= 0.1
        row = (ev["train_accuracy_above_chance"], ev["train_loss_vs_accuracy_implied"], to_asym, memorised,
               "label_noise_floor" in d.findings)
        stats[group(c)].append(row)
        if args.rows:
            split = "design" if is_design(c) else "held-out"
            print(f"{c['file']:62s} {split:8s} {c['label']:12s} -> {d.verdict:12s} above chance {row[0]:.2f}  "
                  f"loss/implied {row[1]:.2f}  loss/asymptote {'-' if to_asym is None else f'{to_asym:.2f}'}  "
                  f"memorised {'yes' if memorised else 'no'}  estimate used {'yes' if row[4] else 'no'}")
    print("| labelled group | curves | above chance (min-max) | loss / accuracy-implied (min-max) | within 10% | "
          "... and >= half way | loss / asymptote (min-max) | memorisation onset | estimate used |")
    print("|---|---|---|---|---|---|---|---|---|")
    for g in sorted(stats):
        rows = stats[g]
        a = [r[0] for r in rows]
        q = [r[1] for r in rows]
        s = [r[2] for r in rows if r[2] is not None]
        asym = f"{min(s):.2f}-{max(s):.2f}" if s else "-"
        band = [r for r in rows if abs(r[1] - 1) <= 0.1]
        print(f"| {g} | {len(rows)} | {min(a):.2f}-{max(a):.2f} | {min(q):.3g}-{max(q):.3g} | {len(band)} | "
              f"{sum(r[0] >= 0.5 for r in band)} | {asym} | "
              f"{sum(r[3] for r in rows)} | {sum(r[4] for r in rows)} |")


if __name__ == "__main__":
    main()
