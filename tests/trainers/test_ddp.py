"""``fit(..., dist=...)``: 2 gloo ranks compute what 1 process computes for the same global batch and seed."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from trainers.data import TaskData
from trainers.distributed import TorchDist
from trainers.loop import SingleProcess, fit
from trainers.tasks import load_task

HP = {"model": "mlp", "hidden": 16, "layers": 1, "dropout": 0.0, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
      "batch_size": 61, "epochs": 2, "seed": 3, "train_fraction": 0.3}  # 61: the ranks' slices differ by one
COMPARED = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def _rank(rank: int, world: int, port: int, out: str, hp: dict[str, Any], data: TaskData) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        reports: list[dict[str, float]] = []
        checkpoints: list[bool] = []

        def report(metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
            reports.append(metrics)
            checkpoints.append(checkpoint is not None and "module." not in next(iter(checkpoint["model_state"])))

        fit(hp, report, data=data, dist=TorchDist())
        Path(out, f"rank{rank}.json").write_text(json.dumps({"reports": reports, "checkpoints": checkpoints}))
        dist.barrier()  # both ranks saved their results before either tears gloo down
    finally:
        dist.destroy_process_group()
    # Leave without C++ static destructors: gloo's threads can abort a finished rank at interpreter exit
    # ("terminate called without an active exception", SIGABRT) after its results are saved.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def digits() -> TaskData:
    """Loaded once here and handed to the ranks: each spawned process would spend seconds importing sklearn."""
    return load_task("digits", {"val_fraction": 0.2})


def _single(hp: dict[str, Any], data: TaskData) -> list[dict[str, float]]:
    reports: list[dict[str, float]] = []
    fit(hp, lambda metrics, checkpoint=None: reports.append(metrics), data=data)
    return reports


@pytest.mark.parametrize("extra", [{}, {"accumulate_steps": 2, "l2": 1e-3}], ids=["plain", "accumulate-l2"])
def test_two_gloo_ranks_match_one_process(
    tmp_path: Path, extra: dict[str, Any], digits: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    hp = {**HP, **extra}
    torch.set_num_threads(1)
    single = _single(hp, digits)
    # spawn re-runs __main__'s file in each child; after an AppTest in the same session that file is a
    # Streamlit page. pytest's own __main__ has nothing the ranks need, so hide its path from spawn.
    monkeypatch.setattr(sys.modules["__main__"], "__file__", None, raising=False)
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path), hp, digits), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    for reports in (r["reports"] for r in ranks):
        assert len(reports) == len(single) == 2
        for got, want in zip(reports, single, strict=True):
            for name in COMPARED:
                assert got[name] == pytest.approx(want[name], rel=1e-4), (name, got, want)
    assert all(ranks[0]["checkpoints"]) and all(ranks[1]["checkpoints"])  # the bare module's keys, no "module."


def test_single_process_default_is_unchanged(digits: TaskData) -> None:
    hp = {**HP, "epochs": 1}
    a = _single(hp, digits)
    b: list[dict[str, float]] = []
    fit(hp, lambda metrics, checkpoint=None: b.append(metrics), data=digits, dist=SingleProcess())
    assert [{k: m[k] for k in COMPARED} for m in a] == [{k: m[k] for k in COMPARED} for m in b]
