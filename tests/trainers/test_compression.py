"""trainers.compression: int8, pruning, distillation and ONNX variants of real built-in models load and predict."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.compression import onnx_export, prune, quantize, retrain
from trainers.compression.artifact import UnsafeFile, load_variant, save_variant
from trainers.compression.measure import count_parameters, evaluate, predict
from trainers.compression.pipeline import Winner, compress
from trainers.compression.settings import CompressSettings, SettingsError, check_applicable
from trainers.loop import fit
from trainers.models import build_model

torch.set_num_threads(1)
SEQ = (1, 40)  # MNIST-1D's (channels, length)
HP = {"hidden": 128, "layers": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory: pytest.TempPathFactory) -> Winner:
    """A digits MLP of width 128 trained for 3 epochs (val accuracy ~0.9), as a checkpoint would give it."""
    config = {"model": "mlp", **HP, "epochs": 3, "optimizer": "adam", "lr": 3e-3, "batch_size": 64, "seed": 0}
    saved: dict[str, Any] = {}
    fit(config, lambda m, c=None: saved.update(c or {}), task="digits", metric="val_accuracy", goal="maximize")
    path = tmp_path_factory.mktemp("winner") / "model.pt"
    torch.save(saved, path)
    return Winner.from_checkpoint(path, "digits", "val_accuracy", "maximize")


def _model(name: str, shape: tuple[int, ...], **hp: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, shape, 10, {**HP, **hp}).eval()


def _save(tmp_path: Path, model: torch.nn.Module, name: str, shape: tuple[int, ...], transform: Any,
          **hp: Any) -> Path:
    return save_variant(tmp_path / f"{name}.pt", model, method=transform, transform=transform,
                        config={"model": name, **HP, **hp}, input_shape=shape, n_outputs=10)


# -- settings ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "field", "match"), [
    ({"methods": ("dynamic_int8", "int4")}, "methods", "unknown method 'int4'; methods: dynamic_int8"),
    ({"sparsities": (0.5, 1.0)}, "sparsities[1]", "strictly between 0 and 1, got 1.0"),
    ({"sparsities": (0.0,)}, "sparsities[0]", "strictly between 0 and 1, got 0.0"),
    ({"structured_sparsity": -0.2}, "structured_sparsity", "got -0.2"),
    ({"alpha": 1.5}, "alpha", r"\[0, 1\], got 1.5"),
    ({"temperature": 0.0}, "temperature", "> 0"),
    ({"repeats": 1}, "repeats", ">= 3"),
])
def test_settings_name_the_field_they_reject(kwargs: dict[str, Any], field: str, match: str) -> None:
    with pytest.raises(SettingsError, match=match) as caught:
        CompressSettings(**kwargs).validated()
    assert caught.value.field == field


def test_a_method_named_for_the_wrong_architecture_is_an_error_and_skipped_otherwise() -> None:
    with pytest.raises(SettingsError, match="static_int8 applies to models cnn; the winner is a mlp"):
        check_applicable(("dynamic_int8", "static_int8"), "mlp", explicit=True)
    assert check_applicable(("dynamic_int8", "static_int8"), "mlp", explicit=False) == ("dynamic_int8",)


# -- quantization --------------------------------------------------------------------------------------
def test_dynamic_int8_mlp_keeps_accuracy_at_under_a_third_of_the_size(digits_mlp: Winner, tmp_path: Path) -> None:
    w = digits_mlp
    q = quantize.dynamic_int8(w.model)
    fp32 = save_variant(tmp_path / "fp32.pt", w.model, method="fp32", transform="none", config=w.config,
                        input_shape=w.data.input_shape, n_outputs=10)
    int8 = save_variant(tmp_path / "int8.pt", q, method="dynamic_int8", transform="dynamic_int8", config=w.config,
                        input_shape=w.data.input_shape, n_outputs=10)
    assert int8.stat().st_size <= 0.35 * fp32.stat().st_size
    assert evaluate(q, w.data)["val_accuracy"] >= evaluate(w.model, w.data)["val_accuracy"] - 0.01
    with quantize.quiet():
        torch.load(int8, weights_only=True)  # Linear-only int8 needs no allowlist
    reloaded = load_variant(int8)
    assert torch.equal(predict(reloaded, w.data.x_val), predict(q, w.data.x_val))


def test_dynamic_int8_gru_loads_through_the_torchbind_allowlist_only(tmp_path: Path) -> None:
    gru = _model("gru", SEQ)
    q = quantize.dynamic_int8(gru)
    path = _save(tmp_path, q, "gru", SEQ, "dynamic_int8")
    with pytest.raises(pickle.UnpicklingError, match="torch.ScriptObject"):
        torch.load(path, weights_only=True)
    x = torch.randn(16, *SEQ)
    assert torch.equal(predict(load_variant(path), x), predict(q, x))
    assert (predict(q, x) - predict(gru, x)).abs().max() < 0.05  # int8 stays near fp32


def test_a_variant_file_naming_other_globals_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "hpo.compress/1", "payload": Path("x")}, path)
    with pytest.raises(UnsafeFile, match="pathlib"):
        load_variant(path)


@pytest.mark.parametrize("shape", [(1, 8, 8), SEQ])
def test_static_int8_cnn_is_calibrated_and_loads_weights_only(shape: tuple[int, ...], tmp_path: Path) -> None:
    cnn = _model("cnn", shape, hidden=16)
    x = torch.randn(64, *shape)
    q = quantize.static_int8(cnn, x)
    assert type(q.inner[0]).__module__.startswith("torch.ao.nn.intrinsic.quantized")  # conv+bn+relu: one int8 op
    assert (predict(q, x) - predict(cnn, x)).abs().max() < 0.1 * predict(cnn, x).abs().max()
    path = _save(tmp_path, q, "cnn", shape, "static_int8", hidden=16)
    torch.load(path, weights_only=True)
    assert torch.equal(predict(load_variant(path), x), predict(q, x))


# -- pruning --------------------------------------------------------------------------------------------
def test_global_pruning_reaches_its_sparsity_and_keeps_it_through_finetuning(digits_mlp: Winner) -> None:
    w = digits_mlp
    pruned = prune.global_magnitude(w.model, 0.8)
    retrain.finetune(pruned, w.config, w.data, epochs=1, metric="val_accuracy", goal="maximize")
    prune.make_permanent(pruned)
    assert prune.sparsity_of(pruned) == pytest.approx(0.8, abs=1e-3)
    total, nonzero = count_parameters(pruned)
    assert total == count_parameters(w.model)[0] and nonzero < 0.3 * total
    assert evaluate(pruned, w.data)["val_accuracy"] > 0.8
    assert prune.sparsity_of(w.model) < 0.01  # the winner itself is untouched


def test_a_globally_pruned_gru_is_saved_as_plain_weights_of_the_fp32_size(tmp_path: Path) -> None:
    gru = _model("gru", SEQ)
    pruned = prune.make_permanent(prune.global_magnitude(gru, 0.5))
    assert not any(name.endswith(("_orig", "_mask")) for name in pruned.state_dict())
    assert prune.sparsity_of(pruned) == pytest.approx(0.5, abs=1e-3)
    fp32, path = _save(tmp_path, gru, "gru", SEQ, "none"), tmp_path / "pruned.pt"
    save_variant(path, pruned, method="prune_global", transform="none", config={"model": "gru", **HP},
                 input_shape=SEQ, n_outputs=10)
    assert path.stat().st_size == pytest.approx(fp32.stat().st_size, rel=0.01)
    x = torch.randn(4, *SEQ)
    assert torch.equal(predict(load_variant(path), x), predict(pruned, x))


def _silence_weakest(model: torch.nn.Module, name: str, units: list[int]) -> None:
    """Zero the incoming weights of ``units`` in every hidden layer: they then contribute nothing."""
    with torch.no_grad():
        if name == "gru":
            h = model.gru.hidden_size
            for layer in range(model.gru.num_layers):
                rows = [u + g * h for g in range(3) for u in units]
                for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(model.gru, f"{key}_l{layer}")[rows] = 0
            return
        layers = [m for m in model if isinstance(m, torch.nn.Linear | torch.nn.Conv1d | torch.nn.Conv2d)][:-1] \
            if name == "mlp" else [m for m in model if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d)]
        for layer in layers:
            layer.weight[units] = 0
            layer.bias[units] = 0
        for norm in (m for m in model if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)):
            norm.bias[units] = 0


@pytest.mark.parametrize(("name", "shape"), [("mlp", (1, 8, 8)), ("cnn", SEQ), ("cnn", (1, 8, 8)), ("gru", SEQ)])
def test_structured_pruning_really_shrinks_and_drops_only_the_weakest_units(name: str, shape: tuple[int, ...]) -> None:
    model = _model(name, shape, hidden=16, batch_norm=True)
    _silence_weakest(model, name, [1, 4, 9, 12])
    config = {"model": name, **HP, "hidden": 16, "batch_norm": True}
    small, small_config = prune.structured(model, config, shape, 10, 0.25)
    assert small_config["hidden"] == 12
    assert count_parameters(small)[0] < count_parameters(model)[0]
    x = torch.randn(8, *shape)
    torch.testing.assert_close(predict(small, x), predict(model, x), atol=1e-5, rtol=1e-4)


def test_structured_pruning_refuses_the_transformer() -> None:
    model = _model("transformer", SEQ, hidden=16, heads=2)
    with pytest.raises(ValueError, match="supports mlp, cnn and gru, not transformer"):
        prune.structured(model, {"model": "transformer", **HP, "hidden": 16}, SEQ, 10, 0.5)


# -- distillation --------------------------------------------------------------------------------------
def test_distilled_student_is_smaller_and_learns_from_the_teacher(digits_mlp: Winner) -> None:
    w = digits_mlp
    config = {**w.config, "hidden": 32, "layers": 1}
    student = build_model("mlp", w.data.input_shape, 10, config)
    before = evaluate(student, w.data)["val_accuracy"]
    retrain.distill(w.model, student, w.config, w.data, epochs=10, temperature=4.0, alpha=0.7,
                    metric="val_accuracy", goal="maximize")
    assert count_parameters(student)[0] < count_parameters(w.model)[0] / 4
    assert before < 0.3 < 0.8 < evaluate(student, w.data)["val_accuracy"]


# -- ONNX ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "shape"), [("mlp", (1, 8, 8)), ("gru", SEQ)])
def test_onnx_export_agrees_with_pytorch_at_any_batch(name: str, shape: tuple[int, ...], tmp_path: Path) -> None:
    model = _model(name, shape, hidden=32)
    path = onnx_export.export(model, torch.randn(1, *shape), tmp_path / "m.onnx")
    sess = onnx_export.session(path, threads=1)
    for batch in (1, 33):
        assert onnx_export.max_abs_diff(sess, model, torch.randn(batch, *shape)) < 1e-4
    timing = onnx_export.latency(sess, torch.randn(4, *shape), repeats=3, warmup=1)
    assert timing.batch == 4 and 0 < timing.median_ms <= timing.p90_ms


@pytest.fixture(scope="module")
def mnist1d_cnn(tmp_path_factory: pytest.TempPathFactory) -> Winner:
    """A batch-norm CNN (16 channels, 2 blocks) trained three epochs on half of MNIST-1D's training split."""
    config = {"model": "cnn", "hidden": 16, "layers": 2, "dropout": 0.0, "conv_batch_norm": True, "epochs": 3,
              "optimizer": "adam", "lr": 1e-2, "batch_size": 64, "seed": 0, "train_fraction": 0.5}
    saved: dict[str, Any] = {}
    fit(config, lambda m, c=None: saved.update(c or {}), task="mnist1d", metric="val_accuracy", goal="maximize")
    path = tmp_path_factory.mktemp("cnn") / "model.pt"
    torch.save(saved, path)
    return Winner.from_checkpoint(path, "mnist1d", "val_accuracy", "maximize")


def test_int8_onnx_of_the_cnn_runs_int8_convolutions_and_agrees_with_fp32(mnist1d_cnn: Winner,
                                                                          tmp_path: Path) -> None:
    import onnx

    w = mnist1d_cnn
    fp32 = onnx_export.export(w.model, w.data.x_val[:1], tmp_path / "fp32.onnx")
    int8 = onnx_export.quantize_int8(fp32, tmp_path / "int8.onnx", calibration=w.data.x_train[:512])
    graph = onnx.load(str(int8)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops and "BatchNormalization" not in ops  # BN folded
    types = {t.name: t.data_type for t in graph.initializer}
    assert all(types[n.input[3]] == onnx.TensorProto.INT8 for n in graph.node if n.op_type == "QLinearConv")
    assert not any(n.metadata_props for n in graph.node)  # the exporter's stack traces are stripped
    got = torch.from_numpy(onnx_export.run(onnx_export.session(int8, threads=1), w.data.x_val))
    ref = predict(w.model, w.data.x_val)
    # the tolerance docs/compression.md states: >= 95% of validation examples keep their class, accuracy within
    # 2 points, and 99% of logits within 5% of the largest fp32 logit (beyond the calibrated range they saturate)
    assert (got.argmax(1) == ref.argmax(1)).float().mean() >= 0.95
    accuracy = [(o.argmax(1) == w.data.y_val).float().mean() for o in (got, ref)]
    assert abs(accuracy[0] - accuracy[1]) <= 0.02
    assert float((got - ref).abs().quantile(0.99)) <= 0.05 * float(ref.abs().max())


# -- the whole stage ----------------------------------------------------------------------------------
def test_compress_measures_every_variant_and_exports_the_smallest_acceptable(digits_mlp: Winner,
                                                                             tmp_path: Path) -> None:
    settings = CompressSettings(methods=("dynamic_int8", "prune_structured", "onnx"), finetune_epochs=1,
                                structured_sparsity=0.5, repeats=3, warmup=1, large_batch=64, max_drop=0.05).validated()
    seen: list[str] = []
    variants = compress(digits_mlp, settings, tmp_path, on_variant=lambda v: seen.append(v.name))
    names = [v.name for v in variants]
    # the smallest acceptable variant is int8: its ONNX counterpart is ONNX Runtime's int8 of the fp32 export
    assert names == seen == ["fp32", "dynamic_int8", "prune_structured_0.5", "onnx_fp32", "onnx_int8"]
    by = {v.name: v for v in variants}
    assert by["prune_structured_0.5"].settings["hidden"] == 64 and by["prune_structured_0.5"].params < by["fp32"].params
    assert by["onnx_fp32"].onnx_max_abs_diff is not None and by["onnx_fp32"].onnx_max_abs_diff < 1e-4
    assert by["onnx_fp32"].metric == pytest.approx(by["fp32"].metric)
    assert by["onnx_int8"].size_bytes < 0.5 * by["onnx_fp32"].size_bytes
    assert by["onnx_int8"].settings == {"source": "dynamic_int8", "scheme": "dynamic"}
    for v in variants:
        assert set(v.latency) == {"batch_1", "batch_64"} and v.threads == 1
        assert all(t.median_ms > 0 and t.p90_ms >= t.median_ms for t in v.latency.values())
        assert v.files[0].is_file() and v.size_bytes == v.files[0].stat().st_size
        if v.runtime == "torch":
            x = digits_mlp.data.x_val
            assert torch.equal(predict(load_variant(v.files[0]), x), predict(v.model, x))
