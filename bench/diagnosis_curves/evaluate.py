"""Accuracy of hpo.diagnosis per verdict on the labelled real learning curves, per dataset.

The rules were designed on the sklearn-digits curves and on seed 0 of the ``field`` curves (the design set);
every other dataset, and seed 1 of the field curves, is held out. Each curve goes through the one path a
stored trial takes (``diagnose_trial``: status, error, params, number of classes, validation-set size).

Usage:  python bench/diagnosis_curves/evaluate.py [--data tests/data/diagnosis_curves] [--errors]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hpo.diagnosis import VERDICTS, diagnose, read_history_file  # noqa: E402

DESIGN_SETS = ("digits",)
DESIGN_FIELD_SEEDS = (0,)  # the field curves of these seeds were looked at while changing the rules


def is_design(c: dict[str, Any]) -> bool:
    """Whether a labelled curve belongs to the design set (the rest is held out)."""
    if c["dataset"] == "field":
        return c["params"].get("seed") in DESIGN_FIELD_SEEDS
    return c["dataset"] in DESIGN_SETS


def load_curves(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"file": str(p.relative_to(folder)), "path": p}
            for p in sorted(folder.glob("*/*.json"))]


def evaluate(curves: list[dict[str, Any]]) -> dict[str, dict[str, list[bool]]]:
    """{group: {label: [correct, ...]}} for groups each dataset, 'design', 'held-out', 'all'."""
    out: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for c in curves:
        found = read_history_file(c["path"])  # what hpo diagnose --history reads of the file
        d = diagnose(found.history, params=found.params, n_classes=found.n_classes, val_size=found.val_size)
        ok = d.verdict == c["label"]
        c["predicted"], c["borderline"] = d.verdict, "borderline" in d.findings
        split = "design" if is_design(c) else "held-out"
        name = c["dataset"] if c["dataset"] != "field" else f"field seed {c['params'].get('seed')}"
        for group in (name, split, "all"):
            out[group][c["label"]].append(ok)
    return out


def table(res: dict[str, dict[str, list[bool]]]) -> str:
    groups = sorted(k for k in res if k not in ("design", "held-out", "all"))
    groups += [g for g in ("design", "held-out", "all") if g in res]
    head = "| set | " + " | ".join(VERDICTS) + " | overall |"
    lines = [head, "|" + "---|" * (len(VERDICTS) + 2)]
    for g in groups:
        cells = []
        for v in VERDICTS:
            xs = res[g].get(v, [])
            cells.append(f"{sum(xs)}/{len(xs)} ({sum(xs) / len(xs):.0%})" if xs else "-")
        allx = [x for xs in res[g].values() for x in xs]
        cells.append(f"{sum(allx)}/{len(allx)} ({sum(allx) / len(allx):.0%})")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "diagnosis_curves")
    ap.add_argument("--errors", action="store_true", help="list every misjudged curve")
    args = ap.parse_args()
    curves = load_curves(args.data)
    res = evaluate(curves)
    print(table(res))
    border = [c for c in curves if c["borderline"]]
    print(f"borderline: {len(border)} of {len(curves)} curves; {sum(c['predicted'] != c['label'] for c in border)} "
          f"of them misjudged; misjudged and not borderline: "
          f"{sum(c['predicted'] != c['label'] and not c['borderline'] for c in curves)}")
    if args.errors:
        for c in curves:
            if c["predicted"] != c["label"]:
                mark = " (borderline)" if c["borderline"] else ""
                print(f"  {c['file']}: label {c['label']}, predicted {c['predicted']}{mark}")


if __name__ == "__main__":
    main()
