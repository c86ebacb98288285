"""Rules of the data split: every trial of a sweep trains, validates and is tested on the same rows.

``hpo.rules.check`` calls :func:`check_split` for the built-in loop. The split is fixed by the sweep's
``seed`` (``split_seed`` in each trial's config) and by ``test_fraction`` / ``trainer.test_file``, so
none of them may be searched, and each may only be given where it applies.
"""

from __future__ import annotations

from collections.abc import Callable

from hpo.config import SweepConfig
from hpo.errors import ConfigError
from trainers.tasks import TASKS


def check_split(config: SweepConfig, source: str, check_file: Callable[[str, str], None]) -> None:
    """Raise when a split setting is searched, set where the sweep decides it, or does not apply.

    Args:
        config: the sweep (built-in loop).
        source: the file, for the message.
        check_file: checks a data file ``(path, field)`` the way ``trainer.data_file`` is checked.

    Raises:
        ConfigError: naming the field, the value and the fix.
    """
    trainer = config.trainer
    if "test_fraction" in config.parameters:
        raise ConfigError("test_fraction fixes the test split, which must be the same for every trial: it cannot be "
                          "searched; set it once in trainer.options", source=source, field="parameters.test_fraction")
    for where in ("parameters", "trainer.options"):
        if "split_seed" in (config.parameters if where == "parameters" else trainer.options):
            raise ConfigError(f"split_seed is set from the sweep's own seed (now {config.seed}), so that every trial "
                              "sees the same split; remove it and set `seed:` at the top of the sweep file",
                              source=source, field=f"{where}.split_seed")
    fraction = trainer.options.get("test_fraction")
    field = "trainer.options.test_fraction"
    if fraction is not None and trainer.task is not None and TASKS[trainer.task].official_test:
        raise ConfigError(f"task {trainer.task} has its official test split, so test_fraction ({fraction}) does not "
                          "apply; remove it", source=source, field=field)
    if fraction is not None and trainer.data is not None:
        raise ConfigError(f"trainer.data ({trainer.data}) supplies its own split, so test_fraction ({fraction}) does "
                          "not apply; return (x_train, y_train, x_val, y_val, x_test, y_test) from load_data instead",
                          source=source, field=field)
    if trainer.test_file is not None:
        check_file(trainer.test_file, "trainer.test_file")
