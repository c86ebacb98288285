"""Where a trial's numbers came from: package versions, the git commit of the sweep's code, the host.

Recorded as tags on every trial run (``tracker.schema``) and compared by ``hpo reproduce``. Light on
purpose (no torch, no Ray): reading versions goes through package metadata, not imports.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from tracker import schema

# distribution name -> the name in the tag hpo.version.<name>
_PACKAGES = (("torch", "torch"), ("ray", "ray"), ("optuna", "optuna"), ("mlflow", "mlflow"), ("hpo-tracker", "hpo"))


def provenance_tags(sweep_dir: Path) -> dict[str, str]:
    """Versions (:func:`environment_tags`) and ``hpo.git_commit`` of the work tree holding ``sweep_dir``."""
    tags = environment_tags()
    commit = git_commit(sweep_dir)
    if commit:
        tags[schema.GIT_COMMIT] = commit
    return tags


def environment_tags() -> dict[str, str]:
    """``hpo.version.<package>`` of torch, ray, optuna, mlflow, python and this package (``hpo``)."""
    from importlib.metadata import PackageNotFoundError, version

    tags = {}
    for package, name in _PACKAGES:
        try:
            tags[schema.VERSION_PREFIX + name] = version(package)
        except PackageNotFoundError:
            continue
    tags[schema.VERSION_PREFIX + "python"] = platform.python_version()
    return tags


def git_commit(folder: Path) -> str | None:
    """HEAD of the git work tree at ``folder`` (``+dirty`` when it has changes), or None."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
