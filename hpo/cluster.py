"""Where trials run: a local Ray started for the sweep, or an existing cluster named by address; what one
trial occupies there, and whether it fits.

Ray-free at import (Ray loads only to probe an address), so checking a sweep never imports ``ray.train``.

``ray.init(address=HOST:PORT)`` against an address where nothing listens waits for the GCS for over
two minutes before failing (measured here: 122 s, then killed), so :func:`check_ray_address` probes the
address with a plain TCP connect first, before any MLflow run or SQLite file exists, then (for a GCS
address) asks the GCS for its cluster id: something else listening on the port fails that in about 1 s
where ``ray.init`` would retry for 25 to 40 s.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from hpo.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from hpo.config import SweepConfig

COORDINATOR_CPU = 0.01  # the Tune trial that launches a DDP trial's TorchTrainer; 0 is rejected by Ray
PROBE_TIMEOUT_S = 3.0
GCS_TIMEOUT_MS = 1000
RAY_CLIENT_SCHEME = "ray://"
FIX = (
    "start the cluster (`ray start --head`, or `docker compose up -d` for the team set-up), correct "
    "ray.address / --ray-address, or leave it out to run on a local Ray"
)


def check_ray_address(address: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Check that the Ray cluster at ``address`` answers; returns what to pass to ``ray.init``.

    Args:
        address: ``auto`` (the cluster ``ray start`` left on this machine), ``HOST:PORT`` (a GCS address)
            or ``ray://HOST:PORT`` (Ray Client); None means a local Ray started for the sweep.
        timeout_s: how long the TCP connect may take.

    Returns:
        ``address`` unchanged (None for local Ray).

    Raises:
        ClusterError: nothing answers at the address (or ``auto`` finds no cluster).
    """
    if address is None:
        return None
    target = _resolve_auto() if address == "auto" else address.removeprefix(RAY_CLIENT_SCHEME)
    host, port = split_host_port(target)
    shown = f"auto ({target})" if address == "auto" else address
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ClusterError(f"cannot reach the Ray cluster at {shown}: {reason} after {timeout_s:g} s; {FIX}") from e
    if not address.startswith(RAY_CLIENT_SCHEME):
        _check_gcs(target, shown)
    return address


def _check_gcs(target: str, shown: str) -> None:
    # Ray's private client (what ray.init uses), with a short timeout: the public path waits ~40 s on a
    # port that answers in another protocol. Measured: 1 s timeout -> ~5 s, a gRPC non-Ray server < 0.1 s.
    from ray._raylet import InnerGcsClient  # type: ignore[attr-defined]

    try:
        InnerGcsClient.standalone(target, None, GCS_TIMEOUT_MS)
    except Exception as e:  # noqa: BLE001 - RpcError and its kin: whatever answers is not a Ray head ...
        if "Unauthenticated" in str(e) or "AuthToken" in str(e):  # ... unless it is a head with token auth on
            if os.environ.get("RAY_AUTH_MODE") == "token":
                return  # ray.init reads the token; a wrong one fails there with Ray's own message
            raise ClusterError(
                f"the Ray cluster at {shown} requires token authentication (the default of `ray start` since "
                "Ray 2.5x): set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token (or put it in "
                "~/.ray/auth_token)"
            ) from e
        raise ClusterError(f"cannot reach the Ray cluster at {shown}: the port answers but not as a Ray head "
                           f"(GCS): {e}; the head's GCS port is 6379 unless `ray start --port` said otherwise; "
                           f"use ray://HOST:10001 for Ray Client") from e


def split_host_port(address: str) -> tuple[str, int]:
    """``"host:6379"`` -> ``("host", 6379)``.

    Raises:
        ClusterError: no port, or one that is not a number in 1..65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"a Ray address is auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _resolve_auto() -> str:
    """The address ``ray.init(address="auto")`` would use: $RAY_ADDRESS, or the cluster ``ray start`` left."""
    from ray._private.services import canonicalize_bootstrap_address  # private, but it is what ray.init calls

    try:
        resolved = canonicalize_bootstrap_address("auto")
    except ConnectionError as e:
        raise ClusterError(f"cannot reach the Ray cluster at auto: no running Ray cluster found on this machine; "
                           f"{FIX}") from e
    if not resolved:
        raise ClusterError(f"cannot reach the Ray cluster at auto: no running Ray cluster found; {FIX}")
    return str(resolved).removeprefix(RAY_CLIENT_SCHEME)


def trial_resources(workers: int, cpu: float, gpu: float) -> dict[str, float]:
    """What Tune reserves for one trial: the trial itself with 1 worker; only its coordinator with more."""
    if workers > 1:
        return {"cpu": COORDINATOR_CPU}
    return {"cpu": cpu, **({"gpu": gpu} if gpu else {})}


def cluster_need(workers: int, cpu: float, gpu: float) -> tuple[float, float]:
    """CPUs and GPUs one trial occupies in the whole cluster (coordinator included)."""
    if workers > 1:
        return workers * cpu + COORDINATOR_CPU, workers * gpu
    return cpu, gpu


def check_cluster_fits(
    config: SweepConfig, cluster: dict[str, float], nodes: list[dict[str, float]]
) -> None:
    """Refuse a sweep whose one trial can never be scheduled (Tune would wait for it forever).

    Args:
        config: the sweep (``workers``, ``resources``).
        cluster: ``ray.cluster_resources()``.
        nodes: each live node's resources (``ray.nodes()[i]["Resources"]``).

    Raises:
        ConfigError: the trial needs more CPUs or GPUs than the cluster has, or one process of it
            (the trial, or one worker) more than any single node has.
    """
    cpu, gpu = config.resources.cpu, config.resources.gpu
    need_cpu, need_gpu = cluster_need(config.workers, cpu, gpu)
    has_cpu, has_gpu = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    node_cpu = max((float(n.get("CPU", 0)) for n in nodes), default=0.0)
    node_gpu = max((float(n.get("GPU", 0)) for n in nodes), default=0.0)
    who = f"workers: {config.workers} x " if config.workers > 1 else ""
    fix = "lower workers or resources, or add nodes to the Ray cluster"
    if need_cpu > has_cpu + 1e-9 or need_gpu > has_gpu + 1e-9:
        extra = f" + {need_cpu - config.workers * cpu:g} for the trial's coordinator" if config.workers > 1 else ""
        raise ConfigError(
            f"a trial needs {who}resources {{cpu: {cpu:g}, gpu: {gpu:g}}} = {need_cpu:g} CPUs{extra} and "
            f"{need_gpu:g} GPUs, but the Ray cluster has {has_cpu:g} CPUs and {has_gpu:g} GPUs; {fix}",
            field="resources",
        )
    if cpu > node_cpu + 1e-9 or gpu > node_gpu + 1e-9:
        raise ConfigError(
            f"one {'worker' if config.workers > 1 else 'trial'} needs resources {{cpu: {cpu:g}, gpu: {gpu:g}}}, "
            f"but the largest Ray node has {node_cpu:g} CPUs and {node_gpu:g} GPUs; {fix}",
            field="resources",
        )
