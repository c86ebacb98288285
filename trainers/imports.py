"""Importing user code named ``package.module:function``, torch-free, so that sweep validation can
check it before anything runs and trials can call it on any node."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def import_callable(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (dots after the colon reach attributes).

    Raises:
        ImportError, AttributeError: the module or the attribute does not exist.
    """
    module_name, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]
