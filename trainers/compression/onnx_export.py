"""ONNX export with torch's exporter, checked and timed in ONNX Runtime on CPU.

torch 2.13 exports through ``torch.export`` (the dynamo path, which needs ``onnxscript``); the batch
axis is dynamic, so one file serves batch 1 and large batches. Int8 ONNX files come from ONNX
Runtime's own dynamic quantization of the fp32 file (torch cannot export its quantized modules).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.compression.measure import Latency, time_calls

INPUT, OUTPUT = "x", "output"


def export(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Write ``model`` (fp32, evaluation mode) to ``path`` as one self-contained ONNX file, batch axis dynamic."""
    model = model.eval()
    if len(example) < 2:  # torch.export specializes a size-1 dimension to a constant: trace with two rows
        example = torch.cat([example, example])
    batch = torch.export.Dim("batch", min=1, max=65536)
    # the exporter prints progress lines and logs a warning per torchvision op it skips; neither is ours
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own pytree deprecations
            warnings.simplefilter("ignore", UserWarning)  # nn.GRU's flat-weights notice while tracing
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    finally:
        quiet.setLevel(level)
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of the fp32 file ``source`` (MatMul/Gemm/GRU/LSTM weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing through the root logger on every call
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return target


def session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess: Any, x: torch.Tensor) -> np.ndarray:
    """The ONNX model's outputs on ``x``."""
    return np.asarray(sess.run(None, {INPUT: x.numpy().astype(np.float32)})[0])


def max_abs_diff(sess: Any, reference: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference between ONNX Runtime's and ``reference``'s outputs on ``x``."""
    with torch.inference_mode():
        expected = reference.eval()(x).float().numpy()
    got = run(sess, x)
    return float(np.abs(got - expected.reshape(got.shape)).max())


def call(sess: Any, example: torch.Tensor) -> Callable[[], Any]:
    """One ONNX Runtime run on the batch ``example`` (the feed converted once, outside the timing)."""
    feed = {INPUT: example.numpy().astype(np.float32)}
    return lambda: sess.run(None, feed)


def latency(sess: Any, example: torch.Tensor, *, repeats: int, warmup: int) -> Latency:
    """ONNX Runtime latency on the batch ``example`` (same protocol as PyTorch's figures)."""
    return time_calls(call(sess, example), len(example), repeats=repeats, warmup=warmup)
