"""Data-parallel trials: ``workers: N`` runs each trial as a Ray Train ``TorchTrainer`` of N DDP workers.

Ray Train V2 is the default in Ray 2.60 (``RAY_TRAIN_V2_ENABLED`` unset means on), and in V2 a
``TorchTrainer`` is launched from inside a Tune function trainable: its controller runs in its own
actor (0 CPUs) and the workers in a placement group of their own, so the Tune trial asks only for a
token ``{"CPU": 0.01}`` (Ray rejects 0) and the workers ``resources.cpu`` (and ``resources.gpu``) each.
Workers report through ``ray.train.report``; a controller callback forwards rank 0's metrics and the
persisted checkpoint path through a Ray queue to the trial's thread, which reports them to Tune with
the same reporter as a one-process trial. (Ray's ``TuneReportCallback`` forwards metrics only: the
checkpoint would arrive as a path string and the sweep would lose its best checkpoint.)

The loop in ``trainers`` stays Ray-free: it gets a ``trainers.distributed.TorchDist`` over the process
group Ray Train set up.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from ray.train.v2.api.callback import UserCallback

from hpo.checkpoints import save_checkpoint

_DONE = "__hpo_ddp_done__"


def run_ddp_trial(
    config: Mapping[str, Any],
    reporter: Any,
    *,
    workers: int,
    cpu: float,
    gpu: float,
    fit_kwargs: Mapping[str, Any],
    user_parts: Mapping[str, str],
    threads: int,
) -> None:
    """Train ``config`` with the built-in loop on ``workers`` DDP workers; report each epoch through ``reporter``.

    Runs inside a Tune function trainable. Raises whatever made the training run fail (a worker's error,
    or ``TrainingFailedError`` when a worker process died), so Tune marks the trial FAILED.
    """
    from ray import tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    queue: Any = Queue(maxsize=1, actor_options={"num_cpus": 0})
    per_worker = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": dict(config), "fit": dict(fit_kwargs), "user_parts": dict(user_parts),
                           "threads": threads},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu > 0, resources_per_worker=per_worker),
        run_config=RunConfig(
            name="ddp", storage_path=os.path.join(tune.get_context().get_trial_dir(), "train"),
            callbacks=[_ForwardReports(queue)],  # type: ignore[list-item]  # a Train V2 UserCallback
        ),
    )
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # noqa: BLE001 - handed to the trial's thread, which raises it
            failure.append(e)
        finally:
            queue.put(_DONE)

    thread = threading.Thread(target=fit, name="hpo-ddp-fit", daemon=True)
    thread.start()
    while (item := queue.get()) != _DONE:
        metrics, checkpoint_path = item
        reporter(metrics, checkpoint=checkpoint_path)
    thread.join()
    if failure:
        raise failure[0]


class _ForwardReports(UserCallback):  # type: ignore[misc]
    """On the Train controller: pass rank 0's metrics and the persisted checkpoint to the Tune trial."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        # metrics are all-reduced in the loop, so every rank's are the same; put() blocks while the
        # trial is still reporting the previous epoch
        self.queue.put((metrics[0], checkpoint.path if checkpoint is not None else None))


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Each DDP worker: the built-in ``fit`` over Ray Train's process group; rank 0 sends checkpoints."""
    import torch

    from trainers.distributed import TorchDist
    from trainers.loop import fit
    from trainers.user_parts import user_model_and_data

    torch.set_num_threads(max(1, int(loop_config["threads"])))
    config = loop_config["config"]
    dist = TorchDist()
    data, build = user_model_and_data(loop_config["user_parts"], config)
    fit(config, _TrainReport(dist.rank), data=data, build=build, dist=dist, **loop_config["fit"])


class _TrainReport:
    """``report(metrics, checkpoint)`` on a worker: ``ray.train.report`` on every rank (it is a barrier)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __call__(self, metrics: Mapping[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        import ray.train

        if checkpoint is None or self.rank != 0:
            ray.train.report(dict(metrics))
            return
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(checkpoint, folder)
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(folder))
