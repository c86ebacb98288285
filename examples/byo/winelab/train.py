"""Your own training loop: ``trainer.function: "winelab.train:train"``; hpo only samples and tracks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from winelab.data import load_data


def train(config: Mapping[str, Any], report: Callable[..., None]) -> None:
    """Full-batch logistic regression on wine; ``report(metrics)`` once per epoch."""
    torch.manual_seed(int(config.get("seed", 0)))
    # the test pair stays unused: a loop of your own selects on validation; testing the winner is up to you
    x_train, y_train, x_val, y_val = (torch.as_tensor(a) for a in load_data(config)[:4])
    model = nn.Linear(x_train.shape[1], 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(config["lr"]))
    for _ in range(int(config.get("epochs", 5))):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x_train), y_train)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            logits = model(x_val)
            report({"train_loss": float(loss), "val_loss": float(nn.functional.cross_entropy(logits, y_val)),
                    "val_accuracy": float((logits.argmax(1) == y_val).float().mean())})
