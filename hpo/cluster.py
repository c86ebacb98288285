"""Where trials run: a local Ray started for the sweep, or an existing cluster named by address.

``ray.init(address=HOST:PORT)`` against an address where nothing listens waits for the GCS for over
two minutes before failing (measured here: 122 s, then killed), so :func:`check_ray_address` probes the
address with a plain TCP connect first, before any MLflow run or SQLite file exists, then (for a GCS
address) asks the GCS for its cluster id: something else listening on the port fails that in about 1 s
where ``ray.init`` would retry for 25 to 40 s.
"""

from __future__ import annotations

import os
import socket

from hpo.errors import ClusterError

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
