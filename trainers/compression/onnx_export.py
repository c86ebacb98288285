"""ONNX export with torch's exporter, checked and timed in ONNX Runtime on CPU.

torch 2.13 exports through ``torch.export`` (the dynamo path, which needs ``onnxscript``); the batch
axis is dynamic, so one file serves batch 1 and large batches. A CNN's batch norms are folded into
its convolutions before export (exact in evaluation mode), and the exporter's per-node metadata (stack
traces, module paths) and shape annotations are dropped from the file: they are a quarter of a small
model's bytes and nothing ONNX Runtime needs.

Int8 ONNX files come from ``onnxruntime.quantization`` applied to the fp32 file (torch cannot export
its own quantized modules): static int8 for models with convolutions (QOperator format, per-channel
int8 weights, activation scales calibrated on training data, so Conv runs as ``QLinearConv``), dynamic
int8 otherwise (MatMul/Gemm/GRU/LSTM weights int8, activations quantized per batch; no calibration).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from trainers.compression.measure import Latency, time_calls

INPUT, OUTPUT = "x", "output"


def export(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Write ``model`` (fp32, evaluation mode) to ``path`` as one self-contained ONNX file, batch axis dynamic."""
    model = fold_batch_norm(model.eval())
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
    return strip(path)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of a built-in CNN (a Sequential of conv, norm, ReLU blocks) with each batch norm folded into
    the convolution before it (``fuse_conv_bn_eval``: exact in evaluation mode); other models unchanged."""
    if not isinstance(model, nn.Sequential):
        return model
    layers = list(copy.deepcopy(model).eval())
    for i in range(len(layers) - 1):
        conv, norm = layers[i], layers[i + 1]
        if isinstance(conv, nn.Conv1d | nn.Conv2d) and isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d):
            layers[i], layers[i + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return nn.Sequential(*layers).eval()


def strip(path: Path) -> Path:
    """Drop what only describes the graph (per-node metadata, doc strings, intermediate shapes, unused
    opset imports) from the ONNX file at ``path``, in place; the computation is untouched."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del graph.value_info[:]
    del model.metadata_props[:]
    graph.doc_string = model.doc_string = ""
    used = {node.domain for node in graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))
    return path


def has_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` holds a convolution (then int8 ONNX is static, calibrated)."""
    return any(isinstance(m, nn.Conv1d | nn.Conv2d) for m in model.modules())


def quantize_int8(source: Path, target: Path, calibration: torch.Tensor | None = None) -> Path:
    """ONNX Runtime's int8 quantization of the fp32 file ``source``: static (per-channel weights, activation
    ranges from the ``calibration`` examples) when given them, else dynamic (MatMul/Gemm/GRU/LSTM weights)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing through the root logger on every call
    try:
        if calibration is None:
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        else:
            # QOperator (QLinearConv) rather than QDQ pairs: the same kernels in ONNX Runtime, a smaller file
            quantize_static(str(source), str(target), _reader(calibration), quant_format=QuantFormat.QOperator,
                            per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    finally:
        root.setLevel(level)
    return strip(target)


def _reader(x: torch.Tensor) -> Any:
    """A CalibrationDataReader feeding the examples ``x`` to ``quantize_static`` in batches of 256."""
    from onnxruntime.quantization import CalibrationDataReader

    class Calibration(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.feeds = iter([{INPUT: x[i : i + 256].numpy().astype(np.float32)} for i in range(0, len(x), 256)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    return Calibration()


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
