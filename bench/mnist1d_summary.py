"""Summarise bench/mnist1d_confirmed.sh's output folder: one row per model, test accuracy of the confirmed
winner as mean and 95% t-interval over its fresh seeds, beside the paper and our earlier selection-biased
figures. Usage: python bench/mnist1d_summary.py OUT_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAPER = {"mlp": "68%", "cnn": "94%", "gru": "91%"}
BEFORE = {"mlp": "79.8%", "cnn": "99.2%", "gru": "99.0%"}  # best val_accuracy, selected on the test split (2026-11-23)


def row(folder: Path, model: str) -> str:
    result = folder / model / "result.json"
    try:
        doc = json.loads(result.read_text())
    except (OSError, json.JSONDecodeError):
        return f"{model.upper():<4} {PAPER[model]:>6}  {BEFORE[model]:>7}  not finished (see {model}/stderr.txt)"
    confirmation = doc.get("confirmation") or {}
    winner = next((c for c in confirmation.get("configs", []) if c["run_id"] == confirmation.get("winner")), None)
    trials = doc["trials"]
    counts = (f"{len(trials)} trials ({sum(t['status'] == 'FINISHED' for t in trials)} finished, "
              f"{sum(t['early_stopped'] for t in trials)} stopped early)")
    if winner is None:
        return f"{model.upper():<4} {PAPER[model]:>6}  {BEFORE[model]:>7}  no confirmed winner; {counts}"
    test, val = winner["test"], winner["val"]
    single = (doc["best"].get("test") or {}).get("test_accuracy")
    test_text = "-" if test is None else (
        f"{100 * test['mean']:.1f}% [{100 * test['low']:.1f}, {100 * test['high']:.1f}]"
        f" (std {100 * test['std']:.1f}, n={test['n']})")
    return (f"{model.upper():<4} {PAPER[model]:>6}  {BEFORE[model]:>7}  test {test_text}; "
            f"val {100 * val['mean']:.1f}% [{100 * val['low']:.1f}, {100 * val['high']:.1f}]; "
            f"search trial {winner['trial_number']} (val {100 * winner['search_value']:.1f}%, "
            f"its own test {'-' if single is None else f'{100 * single:.1f}%'}); "
            f"{confirmation['verdict']}; {counts}")


def main() -> None:
    folder = Path(sys.argv[1])
    print("model  paper   before   confirmed winner: test accuracy mean [95% interval] over fresh seeds; ...")
    for model in ("mlp", "cnn", "gru"):
        print(row(folder, model))


if __name__ == "__main__":
    main()
