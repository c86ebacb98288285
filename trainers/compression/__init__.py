"""Compression of a trained built-in model: int8 quantization, pruning, distillation, ONNX export.

Pure PyTorch (and ONNX Runtime): knows nothing of Ray or MLflow. ``settings`` is torch-free, so a
request can be checked before torch loads; the rest imports torch.
"""

from trainers.compression.settings import APPLIES_TO, BASELINE, METHODS, CompressSettings, SettingsError

__all__ = ["APPLIES_TO", "BASELINE", "METHODS", "CompressSettings", "SettingsError"]
