"""The networks: the seed's exact model, the modern preset, the preprocessing saved models carry."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from galaxy_classification.data.field_of_view import FieldOfView  # noqa: E402
from galaxy_classification.model import architectures, preprocessing, presets
from galaxy_classification.model import files as model_files
from galaxy_classification.training import loop

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
    model = architectures.build_modern_cnn(96)
    names = [type(layer).__name__ for layer in model.layers]
    assert "Flatten" not in names and "GlobalAveragePooling2D" in names
    assert model.count_params() < 400_000
    assert model.output_shape == (None, 2)


def test_preprocessing_crops_the_centre_resizes_and_scales():
    image = np.zeros((1, 40, 40, 3), np.uint8)
    image[:, 10:30, 10:30] = 200  # the central half is bright, the rest dark sky
    cropped = np.asarray(preprocessing.preprocess_images(image, 0.5, 20))
    assert cropped.dtype == np.float32 and cropped.shape == (1, 20, 20, 3)
    np.testing.assert_allclose(cropped, 200 / 255, atol=1e-6)
    resized = np.asarray(preprocessing.preprocess_images(image, 1.0, 20))
    assert resized.shape == (1, 20, 20, 3) and resized.min() < 0.05 and resized.max() > 0.7
    unchanged = np.asarray(preprocessing.preprocess_images(image, 1.0, 40))
    np.testing.assert_allclose(unchanged, image / 255.0, atol=1e-6)


def test_augmentation_keeps_pixels_and_range():
    rng = np.random.default_rng(0)
    batch = rng.random((16, 24, 24, 3)).astype(np.float32)
    turned = preprocessing.augment_batch(batch, np.random.default_rng(1), dihedral=True)
    assert turned.shape == batch.shape
    for before, after in zip(batch, turned):  # flips and 90° turns only move pixels
        np.testing.assert_allclose(np.sort(before, axis=None), np.sort(after, axis=None))
    moved = preprocessing.augment_batch(batch, np.random.default_rng(1), dihedral=False, max_shift=0.1, brightness=0.2)
    assert moved.shape == batch.shape and moved.dtype == np.float32
    assert 0.0 <= moved.min() and moved.max() <= 1.0
    np.testing.assert_array_equal(
        preprocessing.augment_batch(batch, np.random.default_rng(5), max_shift=0.1, brightness=0.2),
        preprocessing.augment_batch(batch, np.random.default_rng(5), max_shift=0.1, brightness=0.2),
    )


def test_the_keras_file_takes_raw_images_of_any_size_and_records_its_field(tmp_path):
    network = architectures.build_modern_cnn(32, (8, 16), (1, 1))
    field = FieldOfView(5.12, 64)
    h5, keras_file = model_files.save_classifier_files(network, tmp_path / "model", 0.5, 32, field)
    assert not list(tmp_path.glob(".*tmp*"))
    classifier = model_files.wrap_for_saving(network, 0.5, 32, field)
    loaded = model_files.load_model(keras_file)
    for raw in (np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8),
                np.random.default_rng(1).integers(0, 256, (2, 100, 100, 3), dtype=np.uint8)):
        np.testing.assert_allclose(loaded.keras_model.predict_on_batch(raw), classifier.predict_on_batch(raw),
                                   atol=1e-6)
    assert (loaded.default_crop, loaded.image_size) == (0.5, 32)
    assert (loaded.view_petro_radii, loaded.trained_field, loaded.band) == (2.56, 5.12, "g")
    from_h5 = model_files.load_model(h5)
    assert (from_h5.view_petro_radii, from_h5.trained_field, from_h5.default_crop) == (2.56, 5.12, 0.5)


def test_the_h5_file_is_the_bare_network_on_float_images(tmp_path):
    network = architectures.build_modern_cnn(16, (4, 8), (1, 1))
    h5, _ = model_files.save_classifier_files(network, tmp_path / "model", 1.0, 16, FieldOfView(5.12, 16))
    import keras

    bare = keras.models.load_model(h5, compile=False)
    assert bare.input_shape == (None, 16, 16, 3) and bare.input.dtype == "float32"
    batch = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(bare.predict_on_batch(batch), network.predict_on_batch(batch), atol=1e-6)


def test_a_model_without_preprocessing_is_wrapped_on_load(tmp_path):
    legacy = architectures.create_seed_cnn((24, 24, 3))  # the seed saved its bare network
    legacy.save(tmp_path / "old.keras")
    loaded = model_files.load_model(tmp_path / "old.keras")
    raw = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    np.testing.assert_allclose(model_files.predict_probabilities(loaded, datasets_of(raw, tmp_path), 1.0, progress=False),
                               legacy.predict_on_batch(raw / 255.0), atol=1e-5)
    assert loaded.view_petro_radii is None and loaded.default_crop == 1.0


def datasets_of(images, directory, name="images.npy"):
    from galaxy_classification.data import image_stores

    path = directory / name
    np.save(path, images)
    return image_stores.NpyImages(path)


def test_loading_a_bad_model_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="--model .*absent.keras: no such file"):
        model_files.load_model(tmp_path / "absent.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras: not a complete .keras file"):
        model_files.load_model(tmp_path / "broken.keras")
    with pytest.raises(ValueError, match="expected a .keras or .h5"):
        model_files.load_model(tmp_path / "model.pt")


def test_prediction_crops_each_frame_to_the_asked_centre_fraction(tmp_path):
    network = architectures.build_modern_cnn(16, widths=(4, 8), convs_per_block=(1, 1))
    path = model_files.save_model(model_files.wrap_for_saving(network, 1.0, 16), tmp_path / "tiny.keras")
    classifier = model_files.load_model(path)
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    crops = np.array([1.0, 0.5, 0.5])

    probabilities = model_files.predict_probabilities(classifier, datasets_of(frames, tmp_path), crops, progress=False)

    centres = datasets_of(np.ascontiguousarray(frames[:, 16:48, 16:48]), tmp_path, "centres.npy")
    whole = model_files.predict_probabilities(classifier, centres, 1.0, progress=False)
    np.testing.assert_allclose(probabilities[1:], whole[1:], atol=1e-5)
    full = model_files.predict_probabilities(classifier, datasets_of(frames, tmp_path), 1.0, progress=False)
    np.testing.assert_allclose(probabilities[0], full[0], atol=1e-6)


@pytest.mark.parametrize("n_train, batch_size, expected", [(180, None, 8), (720, None, 28), (3666, None, 64),
                                                           (180, 32, 32)])
def test_modern_preset_keeps_enough_steps_per_epoch_on_small_samples(n_train, batch_size, expected):
    from galaxy_classification.training.plan import TrainingOptions, resolve_settings

    from trainer_helpers import FramesOfField

    data = FramesOfField(10.152)
    settings = resolve_settings("modern", data, TrainingOptions(batch_size=batch_size), n_train=n_train)
    assert settings.batch_size == expected
    assert settings.crop_fraction == pytest.approx(3.55 / 10.152)
    assert resolve_settings("seed", data, TrainingOptions(image_size=64), n_train=n_train).batch_size == 5


def test_early_stopping_keeps_an_epoch_from_the_second_half_of_the_schedule():
    """The cosine schedule's learning rate is still high in the first half, so a low
    validation loss there is luck: the saved network is the best of the second half,
    and metrics.json's epoch_kept names the epoch Keras really restored."""
    import dataclasses


    settings = dataclasses.replace(presets.MODERN_PRESET, epochs=10, early_stopping_patience=3)
    # lowest at epoch 3 (first half); in the second half lowest at epoch 7, then 3 worse: stop after 10
    validation_loss = [0.9, 0.6, 0.30, 0.5, 0.45, 0.40, 0.35, 0.36, 0.37, 0.38]

    class ScriptedModel:
        """Stands in for a Keras model: weights are the epoch number."""

        def __init__(self):
            self.weights, self.stop_training = [np.zeros(1)], False

        def get_weights(self):
            return [w.copy() for w in self.weights]

        def set_weights(self, weights):
            self.weights = weights

        def fit(self, *args, callbacks=(), epochs, **kwargs):
            history = {"loss": [], "val_loss": []}
            for callback in callbacks:
                callback.set_model(self)
                callback.on_train_begin()
            for epoch in range(epochs):
                self.weights = [np.full(1, epoch + 1.0)]
                history["loss"].append(1.0)
                history["val_loss"].append(validation_loss[epoch])
                for callback in callbacks:
                    callback.on_epoch_end(epoch, {"val_loss": validation_loss[epoch]})
                if self.stop_training:
                    break
            for callback in callbacks:
                callback.on_train_end()
            return type("History", (), {"history": history})()

    model = ScriptedModel()
    history, _, epoch_kept = loop.fit(model, None, None, settings, progress=False)
    assert settings.first_epoch_watched() == 5
    assert model.weights[0][0] == 7 == epoch_kept
    assert len(history["loss"]) == 10
    without_stopping = dataclasses.replace(settings, early_stopping_patience=None)
    history, _, epoch_kept = loop.fit(ScriptedModel(), None, None, without_stopping, progress=False)
    assert epoch_kept == 10 == len(history["loss"])
