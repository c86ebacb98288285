"""The sweep file's optional ``compress:`` block: run ``hpo compress``'s stage once the search is done.

The block takes the settings ``hpo compress`` takes (the same names, flags without ``--`` and with
``_``); leaving it out runs no compression. Types are checked by pydantic when the file loads, the
rules by ``CompressSettings.validated`` (one set of rules for the flag and the block) through
``check``, so a bad block exits 2 naming ``compress.<field>`` before anything is created. Torch-free.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hpo.errors import ConfigError
from trainers.compression.settings import CompressSettings, Method, SettingsError

_DEFAULTS = CompressSettings()


class CompressBlock(BaseModel):
    """``compress:`` in a sweep file; every field optional, defaults as ``hpo compress``'s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    methods: tuple[Method, ...] | None = Field(
        default=None, description="variants to make; default: every method that applies to the winner's model. "
        "Methods that do not apply to the winner (static_int8 on an MLP) are skipped: the model is known only "
        "after the search")
    sparsities: tuple[float, ...] = _DEFAULTS.sparsities
    structured_sparsity: float = _DEFAULTS.structured_sparsity
    finetune_epochs: int = _DEFAULTS.finetune_epochs
    distill_epochs: int = _DEFAULTS.distill_epochs
    distill_trials: int = _DEFAULTS.distill_trials
    student_width: float = _DEFAULTS.student_width
    student_layers: int = _DEFAULTS.student_layers
    temperature: float = _DEFAULTS.temperature
    alpha: float = _DEFAULTS.alpha
    max_drop: float = _DEFAULTS.max_drop
    threads: int = _DEFAULTS.threads
    large_batch: int = _DEFAULTS.large_batch
    repeats: int = _DEFAULTS.repeats
    warmup: int = _DEFAULTS.warmup
    calibration_samples: int = _DEFAULTS.calibration_samples

    def settings(self) -> CompressSettings:
        """The block as the stage's settings (not yet checked: see ``check``)."""
        given: dict[str, Any] = self.model_dump(exclude={"methods"})
        if self.methods is not None:
            given["methods"] = tuple(self.methods)
        return CompressSettings(**given)


def check(block: CompressBlock | None, trainer: Any, *, source: str) -> None:
    """The ``compress:`` block's rules, when there is one (``trainer``: the sweep's ``hpo.config.Trainer``).

    Raises:
        ConfigError: a setting breaks its rule (named ``compress.<field>``), a distillation sweep without the
            distill method, or a trainer whose model the stage cannot rebuild.
    """
    if block is None:
        return
    try:
        settings = block.settings().validated()
    except SettingsError as e:
        raise ConfigError(str(e).split(": ", 1)[1], source=source, field=f"compress.{e.field}") from None
    if settings.distill_trials and "distill" not in settings.methods:
        raise ConfigError(f"distill_trials: {settings.distill_trials} tunes the distill method's student, but "
                          f"compress.methods ({', '.join(settings.methods)}) leaves distill out; add it or remove "
                          "distill_trials", source=source, field="compress.distill_trials")
    own = [f"trainer.{k}" for k in ("function", "model", "data", "data_file") if getattr(trainer, k)]
    if own:
        raise ConfigError(f"the compression stage rebuilds the built-in tasks' models only, and this sweep sets "
                          f"{', '.join(own)}; remove the compress block (or use trainer.task)",
                          source=source, field="compress")
