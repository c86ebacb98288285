"""This sweep's Ray: started (or joined) once, with the watchdog that ends a local Ray with its driver.

``ray.init`` runs on the main thread: Ray's head processes die with the thread that started them
(``PR_SET_PDEATHSIG``) and its SIGTERM handler is only installed there; the store opens meanwhile on a
thread (``hpo.startup``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from hpo.cluster import RAY_CLIENT_SCHEME, check_cluster_fits
from hpo.errors import ClusterError
from hpo.ray_local import Watchdog
from hpo.startup import PhaseClock

if TYPE_CHECKING:
    from hpo.config import SweepConfig

__all__ = ["RaySession", "QUIET_RAY"]


class RaySession:
    """This sweep's Ray, started at most once (with the watchdog that ends a local Ray with us), and ended."""

    def __init__(self, config: SweepConfig, clock: PhaseClock) -> None:
        self.config, self.clock = config, clock
        self.watchdog: Watchdog | None = None
        self.cpus = 0.0

    def start(self) -> float:
        """Start (or join) Ray once; the cluster's CPUs. A trial larger than the cluster is refused here."""
        if self.watchdog is None:
            self.watchdog = Watchdog.start(local=self.config.ray.address is None)  # a cluster's Ray is not ours
            with self.watchdog.marking():
                self.cpus = start_ray(self.config)
            self.clock.mark("ray started")
        return self.cpus

    def close(self) -> None:
        if self.watchdog is not None:
            import ray

            ray.shutdown()
            self.watchdog.close()


CLIENT_ATTEMPTS = 3  # connections to a Ray Client server whose per-driver server failed to start
CLIENT_RETRY_S = 2.0
_SERVER_START_FAILED = "Initialization failure from server"


def start_ray(config: SweepConfig) -> float:
    """Start (or join) Ray and check that one trial fits the cluster; returns the cluster's CPUs.

    Raises:
        ClusterError: the cluster does not answer.
        ConfigError: a trial needs more CPUs/GPUs than the cluster or any node has (Ray is shut down again).
    """
    quiet_ray_env()
    import ray

    env_vars = dict(QUIET_RAY)  # Tune's controller runs on the head under Ray Client: it needs them there too
    if not (config.ray.address or "").startswith(RAY_CLIENT_SCHEME):
        # the driver's folder, for trainer modules beside the sweep file; a Ray Client's folder is not on the cluster
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        try:
            ray.init(
                # "local", not None: None would join whatever /tmp/ray/ray_current_cluster or $RAY_ADDRESS names,
                # a dead or foreign cluster on a shared machine (a stale file made local sweeps hang here).
                address=config.ray.address or "local",
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                runtime_env={"env_vars": env_vars},
            )
            break
        except ConnectionError as e:  # e.g. ray://HOST:PORT answers TCP but is no Ray Client server
            # Ray Client's proxy starts one server process per driver; when that process dies as it starts
            # (seen here: a zombie before the proxy read its command line) the cluster itself is fine: again
            if attempt < CLIENT_ATTEMPTS and _SERVER_START_FAILED in str(e):
                ray.shutdown()
                time.sleep(CLIENT_RETRY_S)
                continue
            raise ClusterError(f"cannot connect to the Ray cluster at {config.ray.address}: {e}") from e
    try:
        cluster = ray.cluster_resources()
        check_cluster_fits(config, cluster, [n["Resources"] for n in ray.nodes() if n["Alive"]])
    except BaseException:
        ray.shutdown()
        raise
    return float(cluster.get("CPU", os.cpu_count() or 1))


# Keep Ray's console output and extra result files out of the user's way. Ctrl-C raises KeyboardInterrupt
# in the driver (TUNE_DISABLE_SIGINT_HANDLER), so the sweep is closed as interrupted, not left "running".
QUIET_RAY = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "100",
}


def quiet_ray_env() -> None:
    for key, value in QUIET_RAY.items():
        os.environ.setdefault(key, value)
