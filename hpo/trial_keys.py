"""Names a trial's reports and checkpoints carry between the trainable, the DDP workers and the driver.

A module of constants with no imports, so that ``hpo.trainable``, ``hpo.distributed``, the driver's
callbacks and the relay can share them without importing one another.
"""

from __future__ import annotations

BEST_KEY = "hpo_best"  # running best of the sweep metric, what Optuna optimises
TIME_KEY = "hpo_time"  # when the trainer reported the epoch, seconds since the epoch (float)
NODE_KEY = "hpo_node_id"  # the Ray node the trial ran on (a string, in the first report only)
DEVICE_KEY = "hpo_device"  # cpu | cuda: where the built-in loop trains on that node (first report only)
RESUMED_KEY = "hpo_resumed_from"  # the epoch a re-run's saved state ended with (first report only, when > 0)
CHECKPOINT_FILE = "model.pt"  # the file a checkpoint's weights are saved as, in its folder
SIGNALS_KEY = "training_signals"  # a checkpoint dict's per-layer signals (trainers.signals.layer_report)
GRID_INDEX = "_hpo_grid_point"  # the one parameter Optuna sees in a grid sweep; dropped before training
