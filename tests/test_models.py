"""The networks: the seed's exact model, the modern preset, the preprocessing saved models carry."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from galaxy_classification import models  # noqa: E402

SEED_LAYERS = [
    ("Conv2D", {"filters": 16, "kernel_size": (3, 3), "padding": "same", "activation": "relu"}),
    ("BatchNormalization", {}),
    ("MaxPooling2D", {"pool_size": (3, 3)}),
    ("Dropout", {"rate": 0.25}),
    ("Flatten", {}),
    ("Dense", {"units": 64, "activation": "relu"}),
    ("BatchNormalization", {}),
    ("Dropout", {"rate": 0.5}),
    ("Dense", {"units": 2, "activation": "softmax"}),
]


def test_seed_model_is_the_seeds_layer_list_and_parameter_count():
    import quick_cnn_trainer

    model = quick_cnn_trainer.create_cnn((512, 512, 3))
    assert model.count_params() == 29_594_562
    assert model.input_shape == (None, 512, 512, 3) and model.output_shape == (None, 2)
    assert len(model.layers) == len(SEED_LAYERS)
    for layer, (class_name, expected) in zip(model.layers, SEED_LAYERS):
        assert type(layer).__name__ == class_name
        config = layer.get_config()
        for key, value in expected.items():
            assert (tuple(config[key]) if isinstance(value, tuple) else config[key]) == value, (class_name, key)


def test_modern_model_is_small_and_ends_in_global_pooling():
    model = models.build_modern_cnn(96)
    names = [type(layer).__name__ for layer in model.layers]
    assert "Flatten" not in names and "GlobalAveragePooling2D" in names
    assert model.count_params() < 400_000
    assert model.output_shape == (None, 2)


def test_preprocessing_crops_the_centre_resizes_and_scales():
    image = np.zeros((1, 40, 40, 3), np.uint8)
    image[:, 10:30, 10:30] = 200  # the central half is bright, the rest dark sky
    cropped = np.asarray(models.preprocess_images(image, 0.5, 20))
    assert cropped.dtype == np.float32 and cropped.shape == (1, 20, 20, 3)
    np.testing.assert_allclose(cropped, 200 / 255, atol=1e-6)
    resized = np.asarray(models.preprocess_images(image, 1.0, 20))
    assert resized.shape == (1, 20, 20, 3) and resized.min() < 0.05 and resized.max() > 0.7
    unchanged = np.asarray(models.preprocess_images(image, 1.0, 40))
    np.testing.assert_allclose(unchanged, image / 255.0, atol=1e-6)


def test_augmentation_keeps_pixels_and_range():
    rng = np.random.default_rng(0)
    batch = rng.random((16, 24, 24, 3)).astype(np.float32)
    turned = models.augment_batch(batch, np.random.default_rng(1), dihedral=True)
    assert turned.shape == batch.shape
    for before, after in zip(batch, turned):  # flips and 90° turns only move pixels
        np.testing.assert_allclose(np.sort(before, axis=None), np.sort(after, axis=None))
    moved = models.augment_batch(batch, np.random.default_rng(1), dihedral=False, max_shift=0.1, brightness=0.2)
    assert moved.shape == batch.shape and moved.dtype == np.float32
    assert 0.0 <= moved.min() and moved.max() <= 1.0
    np.testing.assert_array_equal(
        models.augment_batch(batch, np.random.default_rng(5), max_shift=0.1, brightness=0.2),
        models.augment_batch(batch, np.random.default_rng(5), max_shift=0.1, brightness=0.2),
    )


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_model_takes_raw_images_of_any_size(tmp_path, suffix):
    classifier = models.wrap_for_saving(models.build_modern_cnn(32, (8, 16), (1, 1)), 0.5, 32)
    raw_small = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    raw_large = np.random.default_rng(1).integers(0, 256, (2, 100, 100, 3), dtype=np.uint8)
    path = models.save_model(classifier, tmp_path / f"model{suffix}")
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    loaded = models.load_model(path)
    for raw in (raw_small, raw_large):
        np.testing.assert_allclose(loaded.predict_on_batch(raw), classifier.predict_on_batch(raw), atol=1e-6)
    preprocessing = loaded.get_layer("preprocessing")
    assert (preprocessing.crop_fraction, preprocessing.image_size) == (0.5, 32)


def test_a_model_without_preprocessing_is_wrapped_on_load(tmp_path):
    legacy = models.create_seed_cnn((24, 24, 3))  # the seed saved its bare network
    legacy.save(tmp_path / "old.keras")
    loaded = models.load_model(tmp_path / "old.keras")
    raw = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict_on_batch(raw), legacy.predict_on_batch(raw / 255.0), atol=1e-5)


def test_loading_a_bad_model_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="--model .*absent.keras: no such file"):
        models.load_model(tmp_path / "absent.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras: not a loadable Keras model"):
        models.load_model(tmp_path / "broken.keras")
    with pytest.raises(ValueError, match="expected a .keras or .h5"):
        models.load_model(tmp_path / "model.pt")


def test_a_loaded_classifier_can_be_told_to_keep_another_centre_fraction(tmp_path):
    network = models.build_modern_cnn(16, widths=(4, 8), convs_per_block=(1, 1))
    path = models.save_model(models.wrap_for_saving(network, 1.0, 16), tmp_path / "tiny.keras")
    frame = np.random.default_rng(0).integers(0, 256, size=(1, 64, 64, 3), dtype=np.uint8)

    whole_frame_model = models.set_crop_fraction(models.load_model(path), 1.0)
    half_frame_model = models.set_crop_fraction(models.load_model(path), 0.5)

    centre = frame[:, 16:48, 16:48]
    assert np.allclose(half_frame_model.predict(frame, verbose=0), whole_frame_model.predict(centre, verbose=0),
                       atol=1e-5)


@pytest.mark.parametrize("n_train, batch_size, expected", [(180, None, 8), (720, None, 28), (3666, None, 64),
                                                           (180, 32, 32)])
def test_modern_preset_keeps_enough_steps_per_epoch_on_small_samples(n_train, batch_size, expected):
    import types

    import quick_cnn_trainer

    csv_data = types.SimpleNamespace(form="csv")
    settings = quick_cnn_trainer.resolve_settings("modern", csv_data, batch_size=batch_size, n_train=n_train)
    assert settings["batch_size"] == expected
    assert quick_cnn_trainer.resolve_settings("seed", types.SimpleNamespace(form="csv"), image_size=64,
                                              n_train=n_train)["batch_size"] == 5
