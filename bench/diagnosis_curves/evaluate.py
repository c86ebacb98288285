"""Accuracy of hpo.diagnosis per verdict on the labelled real learning curves, per dataset.

The rules were designed on the sklearn-digits curves (the design set); every other dataset is held out.

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

from hpo.diagnosis import VERDICTS, diagnose  # noqa: E402

DESIGN_SETS = ("digits",)


def load_curves(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"file": str(p.relative_to(folder))} for p in sorted(folder.glob("*/*.json"))]


def evaluate(curves: list[dict[str, Any]]) -> dict[str, dict[str, list[bool]]]:
    """{group: {label: [correct, ...]}} for groups each dataset, 'design', 'held-out', 'all'."""
    out: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for c in curves:
        d = diagnose(c["history"], params=c["params"], n_classes=c["n_classes"])
        ok = d.verdict == c["label"]
        c["predicted"] = d.verdict
        split = "design" if c["dataset"] in DESIGN_SETS else "held-out"
        for group in (c["dataset"], split, "all"):
            out[group][c["label"]].append(ok)
    return out


def table(res: dict[str, dict[str, list[bool]]]) -> str:
    groups = sorted(k for k in res if k not in ("design", "held-out", "all")) + ["design", "held-out", "all"]
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
    if args.errors:
        for c in curves:
            if c["predicted"] != c["label"]:
                print(f"  {c['file']}: label {c['label']}, predicted {c['predicted']}")


if __name__ == "__main__":
    main()
