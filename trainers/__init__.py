"""PyTorch trainers: the built-in loop, its tasks and models. Knows nothing of Ray or MLflow.

``import trainers`` stays torch-free; ``fit`` and friends load torch on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fit", "Diverged", "FitResult", "Report", "Dist", "SingleProcess"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trainers import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
