"""int8 on CPU: ``torch.ao.quantization`` (what ``hpo compress`` uses) against ``torchao``, side by side.

torchao is not a dependency of hpo; this script needs it importable, e.g.:
    pip install --no-deps --target /tmp/torchao torchao==0.18.0
    PYTHONPATH=/tmp/torchao nice -n 10 .venv/bin/python bench/quant_libraries.py

One digits MLP (width 256, 2 layers, 10 epochs) is quantized four ways: torch.ao dynamic int8, torchao
``Int8DynamicActivationInt8WeightConfig`` and ``Int8WeightOnlyConfig`` in eager mode, and the first
torchao config under ``torch.compile`` (the path torchao's CPU speed-ups come from; its compile time is
reported). Per variant: validation accuracy, state-dict size, latency at batch 1 and 256 (1 thread,
interleaved rounds, median of 30 after 5 warm-up). Then which layers of the built-in CNN and GRU each
library quantizes at all.
"""

from __future__ import annotations

import copy
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = {"model": "mlp", "hidden": 256, "layers": 2, "dropout": 0.1, "optimizer": "adam", "lr": 3e-3,
          "batch_size": 64, "epochs": 10, "scheduler": "cosine", "seed": 0}


def state_bytes(model: Any) -> int:
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def quantized_layers(model: Any, before: Any) -> str:
    """Which of ``before``'s Linear / Conv / GRU layers came out of quantization changed."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.GRU)
    old = {n: type(m) for n, m in before.named_modules() if isinstance(m, kinds)}
    new = dict(model.named_modules())
    out = []
    for name, kind in old.items():
        module = new.get(name)
        weight = getattr(module, "weight", None)  # torchao swaps the weight for an int8 tensor subclass
        changed = type(module) is not kind or (weight is not None and type(weight) not in (torch.nn.Parameter,
                                                                                          torch.Tensor))
        out.append(f"{kind.__name__} {'int8' if changed else 'fp32'}")
    return ", ".join(sorted(set(out)))


def main() -> int:
    import torch
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    from trainers.compression import quantize
    from trainers.compression.measure import evaluate, time_interleaved, torch_call
    from trainers.compression.pipeline import Winner
    from trainers.loop import fit
    from trainers.models import build_model

    torch.set_num_threads(1)
    saved: dict[str, Any] = {}
    fit(dict(CONFIG), lambda m, c=None: saved.update(c or {}), task="digits", metric="val_accuracy", goal="maximize")
    path = Path("/tmp") / f"quant_libraries_{os.getpid()}.pt"
    torch.save(saved, path)
    winner = Winner.from_checkpoint(path, "digits", "val_accuracy", "maximize")
    path.unlink()
    fp32 = winner.model

    def torchao(config: Any) -> Any:
        model = copy.deepcopy(fp32).eval()
        quantize_(model, config)
        return model

    variants: dict[str, Any] = {"fp32": fp32, "torch.ao dynamic int8": quantize.dynamic_int8(fp32),
                                "torchao int8 dyn-act (eager)": torchao(Int8DynamicActivationInt8WeightConfig()),
                                "torchao int8 weight-only (eager)": torchao(Int8WeightOnlyConfig())}
    started = time.perf_counter()
    compiled = torch.compile(torchao(Int8DynamicActivationInt8WeightConfig()))
    with torch.inference_mode():
        compiled(winner.data.x_val[:256])
        compiled(winner.data.x_val[:1])
    compile_s = time.perf_counter() - started
    variants["torchao int8 dyn-act (torch.compile)"] = compiled
    x = winner.data.x_val
    lines = [f"int8 libraries on CPU, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}, "
             f"torchao {__import__('torchao').__version__}; 1 thread; load average "
             + " ".join(f"{v:.1f}" for v in os.getloadavg()),
             "command: PYTHONPATH=/tmp/torchao nice -n 10 .venv/bin/python bench/quant_libraries.py",
             f"digits MLP {CONFIG['hidden']}x{CONFIG['layers']}, {CONFIG['epochs']} epochs; compile of the last row "
             f"(both batch sizes): {compile_s:.0f} s", "",
             f"{'variant':<38} {'val acc':>8} {'state dict':>11} {'b1 ms':>8} {'b256 ms':>8}"]
    timings = {}
    for batch, example in (("b1", x[:1]), ("b256", x.repeat(2, *[1] * (x.dim() - 1))[:256])):
        calls = [torch_call(m, example) for m in variants.values()]
        timings[batch] = time_interleaved(calls, len(example), repeats=30, warmup=5)
    for i, (name, model) in enumerate(variants.items()):
        size = state_bytes(model) if "compile" not in name else state_bytes(variants["torchao int8 dyn-act (eager)"])
        lines.append(f"{name:<38} {evaluate(model, winner.data)['val_accuracy']:>8.4f} {size / 1e3:>9.1f}kB "
                     f"{timings['b1'][i].median_ms:>8.3f} {timings['b256'][i].median_ms:>8.3f}")
    lines += ["", "layers quantized (built-in models, hidden 32):"]
    for name, shape in (("cnn", (1, 40)), ("gru", (1, 40))):
        model = build_model(name, shape, 10, {"hidden": 32, "layers": 2, "dropout": 0.0}).eval()
        lines.append(f"  {name}: torch.ao dynamic: {quantized_layers(quantize.dynamic_int8(model), model)}; "
                     f"torchao quantize_: {quantized_layers(torchao_of(model, quantize_), model)}")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "quant_libraries.txt"
    out.write_text(text + "\n", encoding="utf-8")
    return 0


def torchao_of(model: Any, quantize_: Any) -> Any:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    model = copy.deepcopy(model).eval()
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


if __name__ == "__main__":
    sys.exit(main())
