"""What a model costs: parameter count, serialized size and FLOPs are properties of the model alone."""

from __future__ import annotations

import torch

from trainers import catalog
from trainers.cost import model_cost
from trainers.models import build_model

CPU = torch.device("cpu")


def test_a_linear_layer_costs_what_its_shape_says() -> None:
    cost = model_cost(torch.nn.Linear(40, 10), (40,), CPU)
    assert cost["params"] == 40 * 10 + 10
    assert cost["flops"] == 2 * 40 * 10  # one multiply and one add per weight, one sample
    assert 410 * 4 / 1e6 < cost["size_mb"] < 410 * 4 / 1e6 + 0.01  # float32 weights plus torch.save's framing
    assert cost["latency_ms"] > 0


def test_attention_is_counted_and_the_model_is_left_as_it_was() -> None:
    config = catalog.resolve({"model": "transformer", "hidden": 16})
    model = build_model("transformer", (1, 40), 10, config)
    model.train()
    cost = model_cost(model, (1, 40), CPU)
    linear_only = sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    # the attention matmuls over 40 positions dwarf one position's linear layers; under no_grad the fused
    # kernel would hide them and leave about `linear_only`
    assert cost["flops"] > 10 * linear_only
    assert model.training and all(p.grad is None for p in model.parameters())
