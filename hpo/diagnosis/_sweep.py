"""Sweep level: the share of trials per verdict, and which parameters move the verdicts."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

VERB = {"overfitting": "overfit", "underfitting": "underfit", "diverged": "diverged", "good_fit": "fit well"}
MIN_SIDE = 3  # trials on each side of a condition
FDR = 0.1  # Benjamini-Hochberg false discovery rate over every (parameter, condition, verdict) tested


@dataclass(frozen=True)
class SweepSummary:
    counts: dict[str, int]
    shares: dict[str, float]
    drivers: list[str]  # human sentences, strongest first
    details: list[dict[str, Any]]  # one dict per driver: param, verdict, condition, rates and counts

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "shares": dict(self.shares), "drivers": list(self.drivers),
                "details": [dict(d) for d in self.details]}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _split_counts(rows: list[tuple[Any, str]], verdicts: list[str]) -> list[tuple[str, int, list[int]]]:
    """Candidate conditions on one parameter, thresholds for numbers and equality for everything else: per
    condition its label, how many trials meet it, and per verdict how many of those got it.

    Sorted once and counted by cumulative sums: a 1,000-trial sweep's continuous parameter has ~1,000
    thresholds, and a pass over every trial per threshold and verdict cost seconds.
    """
    values = [v for v, _ in rows]
    hits = np.array([[label == verdict for _, label in rows] for verdict in verdicts], dtype=np.int64)  # V x n
    if all(_is_num(v) for v in values):
        x = np.array([float(v) for v in values])
        order = np.argsort(x, kind="stable")
        thresholds = np.unique(x)[1:]
        first = np.searchsorted(x[order], thresholds, side="left")  # trials below each threshold
        below = np.concatenate([np.zeros((len(verdicts), 1), np.int64), np.cumsum(hits[:, order], axis=1)], axis=1)
        inside = below[:, -1:] - below[:, first]  # V x thresholds
        return [(f">= {u:g}", len(x) - int(f), inside[:, j].tolist())
                for j, (u, f) in enumerate(zip(thresholds.tolist(), first.tolist(), strict=True))]
    text = [str(v) for v in values]
    uniq = sorted(set(text))
    if len(uniq) > 12:
        return []
    out = []
    for u in uniq:
        mask = np.array([t == u for t in text])
        out.append((f"= {u}", int(mask.sum()), hits[:, mask].sum(axis=1).tolist()))
    return out


def fisher_p(hits_in: int, n_in: int, hits_out: int, n_out: int) -> float:
    """Two-sided Fisher exact test of a 2x2 table: is the verdict rate inside the condition different?"""
    n, hits = n_in + n_out, hits_in + hits_out
    total = math.comb(n, n_in)

    def p(x: int) -> float:
        return math.comb(hits, x) * math.comb(n - hits, n_in - x) / total

    observed = p(hits_in)
    lo, hi = max(0, n_in - (n - hits)), min(hits, n_in)
    return min(1.0, sum(q for q in (p(x) for x in range(lo, hi + 1)) if q <= observed * (1 + 1e-9)))


def _sentence(param: str, cond: str, verdict: str, r_in: float, n_in: int, r_out: float, n_out: int) -> str:
    verb = VERB.get(verdict, verdict)
    who = f"trials with {param} {cond}"
    if r_in == 1.0:
        return f"all {n_in} {who} {verb} (vs {r_out:.0%} of the other {n_out})."
    if r_in == 0.0:
        return f"none of the {n_in} {who} {verb} (vs {r_out:.0%} of the other {n_out})."
    if r_out > 0 and r_in < r_out:
        return f"{who} {verb} {r_out / r_in:.1f}x less often ({r_in:.0%} vs {r_out:.0%})."
    if r_out > 0:
        return f"{who} {verb} {r_in / r_out:.1f}x more often ({r_in:.0%} vs {r_out:.0%})."
    return f"{r_in:.0%} of the {n_in} {who} {verb}, none of the other {n_out}."


def summarize(trials: Sequence[tuple[Mapping[str, Any], Any]], verdicts: Sequence[str]) -> SweepSummary:
    """Share per verdict, then for every (param, condition, verdict) the difference in verdict rate between
    trials meeting the condition and the rest; the largest differences that a Fisher exact test finds
    significant (Benjamini-Hochberg over every condition tried, so noise parameters stay quiet) become drivers."""
    labels = [d.verdict for _, d in trials]
    n = len(labels)
    counts = Counter(labels)
    all_verdicts = list(verdicts) + [v for v in counts if v not in verdicts]
    counts_d = {v: counts.get(v, 0) for v in all_verdicts}
    shares = {v: (round(c / n, 4) if n else 0.0) for v, c in counts_d.items()}
    found: list[dict[str, Any]] = []
    tested = 0
    names = sorted({k for p, _ in trials for k in p})
    for name in names:
        rows = [(p[name], d.verdict) for p, d in trials if name in p and p[name] is not None]
        if len(rows) < 4:
            continue
        verdicts_here = sorted({v for _, v in rows})
        totals = [sum(v == verdict for _, v in rows) for verdict in verdicts_here]
        for cond, n_in, inside in _split_counts(rows, verdicts_here):
            n_out = len(rows) - n_in
            if min(n_in, n_out) < MIN_SIDE:
                continue
            for verdict, h_in, total in zip(verdicts_here, inside, totals, strict=True):
                h_out = total - h_in
                r_in, r_out = h_in / n_in, h_out / n_out
                tested += 1
                if abs(r_in - r_out) < 0.3:
                    continue
                # weight by support so a split of 3 trials does not outrank one of 20
                score = abs(r_in - r_out) * math.sqrt(n_in * n_out / len(rows))
                found.append({"param": name, "condition": cond, "verdict": verdict, "rate_in": round(r_in, 4),
                              "rate_out": round(r_out, 4), "n_in": n_in, "n_out": n_out,
                              "score": round(score, 4), "p_value": fisher_p(h_in, n_in, h_out, n_out)})
    found = _significant(found, tested)
    found.sort(key=lambda d: -d["score"])
    chosen: list[dict[str, Any]] = []
    for d in found:  # one sentence per (param, verdict): the best-supported condition
        if any(c["param"] == d["param"] and c["verdict"] == d["verdict"] for c in chosen):
            continue
        chosen.append(d)
        if len(chosen) == 6:
            break
    for d in chosen:
        d["p_value"] = float(f"{d['p_value']:.3g}")
    drivers = [_sentence(d["param"], d["condition"], d["verdict"], d["rate_in"], d["n_in"], d["rate_out"],
                         d["n_out"]) for d in chosen]
    drivers = [s[0].upper() + s[1:] for s in drivers]
    return SweepSummary(counts_d, shares, drivers, chosen)


def _significant(found: list[dict[str, Any]], tested: int) -> list[dict[str, Any]]:
    """Benjamini-Hochberg at FDR over ``tested`` conditions (the untested-for-size ones count as p = 1)."""
    ranked = sorted(found, key=lambda d: d["p_value"])
    keep = 0
    for rank, d in enumerate(ranked, start=1):
        if d["p_value"] <= FDR * rank / max(tested, 1):
            keep = rank
    return ranked[:keep]
