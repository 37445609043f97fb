"""Training precision: mixed bfloat16 only where the CPU computes it natively; saved models are float32."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import quick_cnn_trainer  # noqa: E402
from galaxy_classification.model import (
    architectures,
    precision,  # noqa: E402
    presets,
)

from trainer_helpers import write_data_directory  # noqa: E402

ZEN4_FLAGS = "fpu vme avx2 avx512f avx512_bf16 avx512_vnni"


def test_cpu_flags_are_read_from_cpuinfo_and_absent_elsewhere(tmp_path):
    cpu_info = tmp_path / "cpuinfo"
    cpu_info.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {ZEN4_FLAGS}\n\n"
                        "processor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(cpu_info) == frozenset(ZEN4_FLAGS.split())
    assert precision.cpu_flags(tmp_path / "absent") == frozenset()


def test_auto_is_bfloat16_only_on_a_cpu_with_native_bfloat16(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    expected = "mixed_bfloat16" if keras.backend.backend() == "tensorflow" else "float32"
    assert precision.choose("auto", flags=frozenset(ZEN4_FLAGS.split())) == expected
    assert precision.choose("auto", flags=frozenset({"amx_bf16"})) == expected
    assert precision.choose("auto", flags=frozenset({"avx2", "avx512f"})) == "float32"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # bfloat16 without oneDNN's kernels is emulated
    assert precision.choose("auto", flags=frozenset(ZEN4_FLAGS.split())) == "float32"


def test_an_asked_precision_is_kept_and_a_wrong_one_named():
    assert precision.choose("float32", flags=frozenset(ZEN4_FLAGS.split())) == "float32"
    assert precision.choose("mixed_bfloat16", flags=frozenset()) == "mixed_bfloat16"
    with pytest.raises(ValueError, match=r"--precision must be one of auto, float32, mixed_bfloat16, got 'half'"):
        precision.choose("half")


@pytest.mark.parametrize("preset", [presets.MODERN_PRESET, presets.SEED_PRESET])
def test_mixed_networks_compute_in_bfloat16_and_give_float32_probabilities(preset):
    network = architectures.build_core_model(preset, 16, precision="mixed_bfloat16")
    computing = {layer.compute_dtype for layer in network.layers[:-1] if layer.weights}
    assert computing == {"bfloat16"}
    assert {weight.dtype for weight in network.weights} == {"float32"}  # the weights stay float32
    probabilities = keras.ops.convert_to_numpy(network(np.random.default_rng(0).random((3, 16, 16, 3))))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_both_presets_train_in_float32_unless_asked():
    # mixed bfloat16 trains faster but ranks held-out galaxies a little worse (models/README.md)
    assert presets.SEED_PRESET.precision == presets.MODERN_PRESET.precision == "float32"


def test_a_bfloat16_run_records_its_precision_and_saves_a_float32_model(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=40, size=32)
    out = tmp_path / "out"
    assert quick_cnn_trainer.main(["--data", str(directory), "--preset", "modern", "--epochs", "1",
                                   "--image-size", "32", "--batch-size", "8", "--seed", "3",
                                   "--precision", "mixed_bfloat16", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["precision"] == "mixed_bfloat16"
    for name in ("my-galaxy-model.h5", "my-galaxy-model.keras"):
        saved = keras.saving.load_model(out / name, compile=False)  # plain Keras, nothing of ours
        layers = [layer for layer in _all_layers(saved) if layer.weights]
        assert layers and {layer.compute_dtype for layer in layers} == {"float32"}, name


def test_the_recipe_settles_auto_for_this_machine():
    from galaxy_classification.training.plan import TrainingOptions, resolve_settings

    from trainer_helpers import FramesOfField

    data = FramesOfField(10.152, count=4)
    settled = resolve_settings("modern", data, TrainingOptions(precision="auto"), n_train=100).precision
    assert settled == precision.choose("auto") and settled in ("float32", "mixed_bfloat16")
    assert resolve_settings("modern", data, n_train=100).precision == "float32"


def _all_layers(model):
    for layer in model.layers:
        yield layer
        yield from _all_layers(layer) if hasattr(layer, "layers") else ()
