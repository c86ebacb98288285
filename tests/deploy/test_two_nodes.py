"""A real two-node Ray cluster on this machine (a head and a second node, 1 CPU each): trials run on both.

Each node is a ``ray start --block`` in its own session, so the test stops exactly the processes it
started (by process group) and never runs ``ray stop``, which would end other people's Ray on a shared
machine. Ray 2.60 turns token auth on for ``ray start --head``: both nodes and ``hpo run`` get the same
``RAY_AUTH_MODE=token`` / ``RAY_AUTH_TOKEN``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from sweep_reads import SMALL_SWEEP_YAML, stored_trials
from waiting import wait_until

from tracker import schema

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
SWEEP = """\
name: two-nodes
method: grid
metric: {name: val_accuracy, goal: maximize}
budget: {max_concurrent: 2}
trainer: {task: digits, epochs: 1, options: {hidden: 16, train_fraction: 0.3}}
resources: {cpu: 1}
ray: {address: "127.0.0.1:%d"}
parameters:
  lr: {values: [0.001, 0.01, 0.03, 0.1]}
"""
WAIT_FOR_NODES = """\
import sys, ray
from waiting import wait_until
ray.init(address=sys.argv[1], log_to_driver=False)
alive = lambda: sum(n["Alive"] for n in ray.nodes())
wait_until(lambda: alive() >= 2, 60, interval_s=0.5, message="both nodes alive")
print(alive())
"""
TESTS = Path(__file__).resolve().parents[1]  # where ``waiting`` lives, for the script above


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([RAY, "start", "--block", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the node's whole process group (ray start, its GCS or raylet, their workers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)  # a test cluster: no state worth a longer graceful stop
            return
        except subprocess.TimeoutExpired:
            continue


class Cluster(NamedTuple):
    port: int  # the head's GCS
    client_port: int  # the head's Ray Client server
    env: dict[str, str]  # what a driver needs to join (the auth token)
    home: Path  # HPO_HOME on the cluster's nodes: Ray Tune's storage under Ray Client


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp_path = tmp_path_factory.mktemp("two_nodes")
    port, client_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "HPO_HOME")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    home = tmp_path / "cluster_home"
    node_env = {**env, "HPO_HOME": str(home)}  # both nodes see it, as the compose file's shared volume
    # Ray's AF_UNIX sockets live under the temp dir and allow 107 bytes: pytest's tmp_path is too long
    temp_dir = tempfile.mkdtemp(prefix="hpo2n-", dir="/tmp")
    common = ["--num-cpus", "1", "--object-store-memory", str(80 * 1024**2), "--disable-usage-stats"]
    nodes = [_start(["--head", "--port", str(port), "--ray-client-server-port", str(client_port),
                     "--resources", '{"node_a": 1}', "--include-dashboard=false", "--temp-dir", temp_dir, *common],
                    node_env, tmp_path / "head.log")]
    try:
        wait_until(lambda: _accepts(port), 60, interval_s=0.5, process=nodes[0], message="the head's GCS port opens")
        nodes.append(_start(["--address", f"127.0.0.1:{port}", "--resources", '{"node_b": 1}', *common], node_env,
                            tmp_path / "node_b.log"))
        script_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))}
        alive = subprocess.run([sys.executable, "-c", WAIT_FOR_NODES, f"127.0.0.1:{port}"], env=script_env,
                               capture_output=True, text=True, timeout=120)
        logs = "".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
        assert alive.stdout.strip().endswith("2"), alive.stderr[-2000:] + logs
        yield Cluster(port, client_port, env, home)
    finally:
        for node in reversed(nodes):
            _stop(node)
        _forget_cluster(port)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _forget_cluster(port: int) -> None:
    """``ray start --head`` records its address in /tmp/ray/ray_current_cluster; remove it only if it is ours."""
    record = Path("/tmp/ray/ray_current_cluster")
    try:
        if record.read_text().strip().endswith(f":{port}"):
            record.unlink()
    except OSError:
        pass


def test_trials_run_on_both_nodes(two_nodes: Cluster, tmp_path: Path) -> None:
    port, env = two_nodes.port, two_nodes.env
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.yaml").write_text(SWEEP % port)
    home = folder / "hpo_home"
    hpo = str(Path(sys.executable).with_name("hpo"))
    done = subprocess.run([hpo, "run", "sweep.yaml", "--json"], cwd=folder, env={**env, "HPO_HOME": str(home)},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    parent = json.loads(done.stdout)["parent_run_id"]
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    trials = client.search_runs([client.get_run(parent).info.experiment_id],
                                filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{parent}'")
    assert [t.info.status for t in trials] == ["FINISHED"] * 4
    nodes = {t.data.tags[schema.NODE_ID] for t in trials}
    assert len(nodes) == 2, nodes  # 1 CPU per node and 2 trials at once: both nodes ran trials


def test_ray_client_sweep_is_tracked_by_the_driver(two_nodes: Cluster, tmp_path: Path) -> None:
    """Under Ray Client Tune runs on the head; its trial events, ASHA's stops and the best checkpoint
    still reach the driver, which alone writes its own SQLite store."""
    folder = tmp_path / "laptop"
    folder.mkdir()
    address = f"ray://127.0.0.1:{two_nodes.client_port}"
    (folder / "sweep.yaml").write_text(SMALL_SWEEP_YAML + f'ray: {{address: "{address}"}}\n')
    home = folder / "hpo_home"
    hpo = str(Path(sys.executable).with_name("hpo"))
    done = subprocess.run([hpo, "run", "sweep.yaml", "--json"], cwd=folder,
                          env={**two_nodes.env, "HPO_HOME": str(home)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert "trials 6/6 done" in done.stderr

    trials = stored_trials(doc["tracking_uri"], doc["parent_run_id"])
    assert doc["tracking_uri"] == f"sqlite:///{home / 'mlflow.db'}"
    assert [int(t.tags[schema.TRIAL_NUMBER]) for t in trials] == list(range(6))  # in the order Optuna proposed
    failed = [t for t in trials if t.status == "FAILED"]
    assert [(t.params["lr"], t.params["weight_decay"]) for t in failed] == [("0.05", "10000.0")]
    assert "Diverged: training loss became nan at epoch 1" in failed[0].tags[schema.ERROR]
    # the same outcome as the local grid sweep of this file: ASHA (on the head) stopped the 4 laggards
    assert sorted(t.status for t in trials if t is not failed[0]) == ["FINISHED"] + ["KILLED"] * 4
    for trial in trials:
        assert (trial.tags.get(schema.EARLY_STOPPED) == "true") == (trial.status == "KILLED")
        epochs = int(trial.metrics[schema.EPOCHS_RUN])
        assert [step for step, _ in trial.points.get("val_loss", [])] == list(range(1, epochs + 1))
        if trial.status != "FAILED":
            assert trial.tags[schema.DIAGNOSIS]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(doc["tracking_uri"])
    parent = client.get_run(doc["parent_run_id"])
    assert parent.data.tags[schema.BEST_RUN_ID] == doc["best"]["run_id"]
    # the winner was scored on test by a task on the cluster, its checkpoint fetched from the head's storage
    assert doc["best"]["test_note"] is None and doc["best"]["test"]["test_accuracy"] == parent.data.metrics[
        "test_accuracy"]
    assert [a.path for a in client.list_artifacts(doc["parent_run_id"], schema.BEST_CHECKPOINT_DIR)] == [
        f"{schema.BEST_CHECKPOINT_DIR}/{name}" for name in ("model.pt", "training_signals.json")]
    # Tune kept its storage on the cluster (the head's HPO_HOME), not on the driver's disk
    assert list(two_nodes.home.glob("ray/small-*/*/checkpoint_*"))
    assert not (home / "ray").exists()


NODE_LOSS_SWEEP = """\
name: node-loss
method: grid
metric: {name: val_accuracy, goal: maximize}
budget: {max_concurrent: 3, max_failures: 1}
trainer: {task: digits, epochs: 40, options: {hidden: 64}}
resources: {cpu: 1}
ray: {address: "127.0.0.1:%d"}
parameters:
  lr: {values: [0.001, 0.003, 0.01]}
"""
NODE_ID_OF = """\
import sys, ray
from waiting import wait_until
ray.init(address=sys.argv[1], log_to_driver=False)
node = lambda: next((n["NodeID"] for n in ray.nodes() if n["Alive"] and "node_c" in n["Resources"]), None)
wait_until(lambda: node() is not None, 60, interval_s=0.5, message="node c alive")
print(node())
"""


def _running_on(db: Path, node_id: str) -> bool:
    """A trial run of the sweep is RUNNING on ``node_id`` (read-only: the driver alone writes its store)."""
    if not db.exists():
        return False
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                           "where r.status = 'RUNNING' and t.key = ? and t.value = ?", (schema.NODE_ID, node_id))
        return bool(rows.fetchone()[0])


def test_a_lost_worker_node_s_trial_is_retried_elsewhere_and_the_sweep_goes_on(two_nodes: Cluster,
                                                                              tmp_path: Path) -> None:
    """A third node joins, runs one of three trials, and is killed (its whole process group) mid-trial: that
    trial is retried on a node still alive (``budget.max_failures``), the others finish, nothing stays RUNNING."""
    port, env = two_nodes.port, two_nodes.env
    node_env = {**env, "HPO_HOME": str(two_nodes.home)}
    node_c = _start(["--address", f"127.0.0.1:{port}", "--resources", '{"node_c": 1}', "--num-cpus", "1",
                     "--object-store-memory", str(80 * 1024**2), "--disable-usage-stats"], node_env,
                    tmp_path / "node_c.log")
    try:
        script_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))}
        found = subprocess.run([sys.executable, "-c", NODE_ID_OF, f"127.0.0.1:{port}"], env=script_env,
                               capture_output=True, text=True, timeout=120)
        node_id = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
        assert node_id, found.stderr[-2000:]
        folder = tmp_path / "sweep"
        folder.mkdir()
        (folder / "sweep.yaml").write_text(NODE_LOSS_SWEEP % port)
        home = folder / "hpo_home"
        hpo = str(Path(sys.executable).with_name("hpo"))
        with (tmp_path / "hpo.err").open("w") as err, (tmp_path / "hpo.out").open("w") as out:
            sweep = subprocess.Popen([hpo, "run", "sweep.yaml", "--json"], cwd=folder, stdout=out, stderr=err,
                                     env={**env, "HPO_HOME": str(home)}, start_new_session=True)
            try:
                wait_until(lambda: _running_on(home / "mlflow.db", node_id), 180, interval_s=0.5, process=sweep,
                           message="a trial runs on node c")
                _stop(node_c)  # the node is lost mid-trial
                assert sweep.wait(timeout=300) == 0, (tmp_path / "hpo.err").read_text()[-3000:]
            finally:
                if sweep.poll() is None:
                    os.killpg(sweep.pid, signal.SIGKILL)
    finally:
        _stop(node_c)
    doc = json.loads((tmp_path / "hpo.out").read_text())
    trials = stored_trials(doc["tracking_uri"], doc["parent_run_id"])
    # each grid point once, none lost, none run twice: the lost node's trial was retried (max_failures: 1)
    # on a node still alive, in the run it had, and finished
    assert sorted(t.params["lr"] for t in trials) == ["0.001", "0.003", "0.01"]
    assert [t.status for t in trials] == ["FINISHED"] * 3, [(t.status, t.tags.get(schema.ERROR)) for t in trials]
    # the trial that ran on node c when it was lost ended elsewhere: its run's node tag names where it finished
    assert all(t.tags.get(schema.NODE_ID) != node_id for t in trials)
    for trial in trials:  # the retried attempt started over: each epoch's point is stored once all the same
        assert int(trial.metrics[schema.EPOCHS_RUN]) == 40
        assert [step for step, _ in trial.points["val_loss"]] == list(range(1, 41))
