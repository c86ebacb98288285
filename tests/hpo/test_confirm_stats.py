"""The confirmation's statistics and its summary, as pure functions: intervals, Welch's test, the winner
by mean (not by the luckiest seed), the seeds it derives, and the ``confirm:`` block's validation."""

from __future__ import annotations

import math
import re

import pytest
from scipy import stats

from hpo.confirm import Candidate, ConfirmRun, candidates, confirm_seeds, summary_doc
from hpo.confirm_stats import format_p, summarize, verdict, welch
from hpo.errors import ConfigError
from hpo.loading import validate
from hpo.results import TrialRecord


def test_summary_is_mean_sample_std_and_the_95_t_interval() -> None:
    s = summarize([1.0, 2.0, 3.0, 6.0])
    assert s is not None
    assert s.n == 4 and s.mean == 3.0
    assert s.std == pytest.approx(math.sqrt(14 / 3))  # squared deviations 4+1+0+9 over n-1
    half = 3.182446305284263 * s.std / 2  # t(0.975, df=3) from tables
    assert (s.low, s.high) == (pytest.approx(3.0 - half), pytest.approx(3.0 + half))


def test_one_value_has_no_interval_and_no_values_no_summary() -> None:
    one = summarize([0.7, float("nan")])
    assert one is not None and (one.n, one.mean, one.std, one.low) == (1, 0.7, None, None)
    assert summarize([]) is None


def test_welch_matches_scipy_unequal_variance_t_test() -> None:
    a, b = [0.91, 0.93, 0.90, 0.94, 0.92], [0.88, 0.95, 0.86, 0.90]
    test = welch(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert test is not None
    assert test.t == pytest.approx(reference.statistic) and test.p_value == pytest.approx(reference.pvalue)
    assert test.df == pytest.approx(reference.df) and test.distinguishable is bool(reference.pvalue < 0.05)


def test_equal_constant_samples_are_not_distinguishable_and_different_ones_are() -> None:
    same = welch([0.5, 0.5, 0.5], [0.5, 0.5])
    assert same is not None and (same.p_value, same.distinguishable) == (1.0, False)
    apart = welch([0.9, 0.9], [0.5, 0.5])
    assert apart is not None and (apart.p_value, apart.distinguishable) == (0.0, True)
    assert welch([0.9], [0.5, 0.6]) is None
    assert verdict(same, "trial 3", "trial 1") == (
        "trial 3 vs trial 1: not distinguishable at 5% (Welch's t-test, p = 1)")
    assert verdict(None, "trial 3", "trial 1") == "trial 3 vs trial 1: not tested (each needs 2 or more seeds)"
    assert format_p(0.0004) == "p < 0.001" and format_p(0.01234) == "p = 0.0123"


def test_seeds_are_derived_distinct_stable_and_avoid_taken_ones() -> None:
    five = confirm_seeds(7, 2, 5)
    assert five == confirm_seeds(7, 2, 5) and len(set(five)) == 5
    assert confirm_seeds(7, 2, 3) == five[:3]  # more seeds later (hpo confirm --seeds) keep the first ones
    assert confirm_seeds(8, 2, 5) != five and confirm_seeds(7, 3, 5) != five
    assert five[0] not in confirm_seeds(7, 2, 2, taken={five[0]})
    assert all(0 <= s < 2**31 for s in five)


def _record(number: int, best: float | None, status: str = "FINISHED") -> TrialRecord:
    return TrialRecord(f"t{number}", number, f"run{number}", {"seed": 0, "lr": number}, status=status, best=best)


def test_candidates_are_the_top_scored_trials_with_seeds_distinct_overall() -> None:
    records = [_record(0, 0.5), _record(1, 0.9), _record(2, None, "FAILED"), _record(3, 0.7)]
    chosen = candidates(records, "maximize", top=2, seeds=3, sweep_seed=0)
    assert [(c.origin.number, c.rank) for c in chosen] == [(1, 1), (3, 2)]
    seeds = [s for c in chosen for s in c.seeds]
    assert len(set(seeds)) == 6 and 0 not in seeds


def _runs(origin: str, values: list[float], status: str = "FINISHED") -> list[ConfirmRun]:
    return [ConfirmRun(f"{origin}-{i}", origin, 100 + i, status, v, {"test_accuracy": v - 0.01})
            for i, v in enumerate(values)]


def test_the_winner_is_the_best_mean_not_the_luckiest_search_trial() -> None:
    lucky, steady = _record(0, 0.95), _record(1, 0.90)  # trial 0 won the search by one lucky draw
    cands = [Candidate(lucky, 1, [100, 101, 102]), Candidate(steady, 2, [103, 104, 105])]
    runs = [*_runs("run0", [0.80, 0.82, 0.81]), *_runs("run1", [0.89, 0.90, 0.91]),
            *_runs("run1", [0.99], status="FAILED")]  # a failed run counts nowhere
    doc = summary_doc(cands, runs, "val_accuracy", "maximize", "test_accuracy")
    assert doc["winner"] == "run1" and doc["runner_up"] == "run0"
    first, second = doc["configs"]
    assert (first["run_id"], first["rank"], first["search_rank"]) == ("run1", 1, 2)
    assert first["val"]["values"] == [0.89, 0.90, 0.91] and first["failed_runs"] == 1
    assert first["val"]["mean"] == pytest.approx(0.90)
    assert first["test"]["mean"] == pytest.approx(0.89)
    reference = stats.ttest_ind([0.89, 0.90, 0.91], [0.80, 0.82, 0.81], equal_var=False)
    assert doc["welch"]["p_value"] == pytest.approx(reference.pvalue)
    assert doc["verdict"].startswith("trial 1 vs trial 0: distinguishable at 5%")


def test_minimize_ranks_the_lowest_mean_first_and_no_test_split_says_so() -> None:
    cands = [Candidate(_record(0, 0.1), 1, [1, 2]), Candidate(_record(1, 0.2), 2, [3, 4])]
    doc = summary_doc(cands, [*_runs("run0", [0.5, 0.6]), *_runs("run1", [0.2, 0.3])], "val_loss", "minimize", None)
    assert doc["winner"] == "run1" and doc["test_metric"] is None
    assert [c["test"] for c in doc["configs"]] == [None, None]


@pytest.mark.parametrize(("block", "message"), [
    ("{top: 3, sedes: 5}", "confirm.sedes: unknown key 'sedes' (did you mean 'seeds'?); allowed keys here: seeds, top"),
    ("{top: 3, seeds: 1}", "confirm.seeds: Input should be greater than or equal to 2; got 1"),
    ("{top: 1}", "confirm.top: Input should be greater than or equal to 2; got 1"),
])
def test_confirm_block_errors_name_the_field_and_what_is_allowed(block: str, message: str) -> None:
    import yaml

    raw = yaml.safe_load(f"name: s\ntrainer: {{task: digits}}\nparameters: {{lr: {{values: [0.1, 0.2]}}}}\n"
                         f"confirm: {block}\n")
    with pytest.raises(ConfigError, match=re.escape("s.yaml: " + message)):
        validate(raw, source="s.yaml")


def test_confirm_refuses_several_objectives() -> None:
    raw = {"name": "s", "trainer": {"task": "digits"}, "parameters": {"lr": {"values": [0.1, 0.2]}},
           "metric": [{"name": "val_loss"}, {"name": "val_accuracy", "goal": "maximize"}], "confirm": {}}
    with pytest.raises(ConfigError, match="confirm ranks configurations by the mean of one metric"):
        validate(raw, source="s.yaml")
    assert validate({**raw, "metric": {"name": "val_loss"}}, source="s.yaml").confirm is not None
