"""--init-from: a run starts from a saved network (an ensemble too), keeps its input size and field of
view, records where it started, and refuses a starting model that cannot serve."""

import json

import numpy as np
import pytest

import quick_cnn_trainer
from galaxy_classification.errors import UsageError
from galaxy_classification.model import files as model_files
from galaxy_classification.training import loop, plan

from trainer_helpers import write_data_directory


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Easy galaxies, and a modern network trained on them for a few epochs."""
    directory = tmp_path_factory.mktemp("finetune")
    data, _, _ = write_data_directory(directory / "data", n_galaxies=60, size=32)
    quick_cnn_trainer.train(str(data), "modern", directory / "base", epochs=4, image_size=16, seed=0, progress=False)
    return data, directory / "base" / "my-galaxy-model.keras"


def test_the_first_epoch_starts_from_the_starting_models_loss(base):
    import keras

    data, start = base
    finetuning = plan.plan_training(data, "modern", init_from=start)
    images, prepare = loop.training_images(finetuning.galaxies, start.parent / "cache", finetuning.crops,
                                           finetuning.settings.image_size, progress=False)
    batches = loop.TrainingBatches.for_plan(finetuning, images, prepare)
    loss = keras.losses.CategoricalCrossentropy()

    def first_loss(network):
        network.compile(loss=loss)
        return network.evaluate(batches(finetuning.train_rows), verbose=0)

    network = loop.starting_network(start, finetuning.settings)
    probe = np.random.default_rng(0).random((4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(network.predict(probe, verbose=0),
                               model_files.load_model(start).network.predict(probe, verbose=0), atol=1e-6)
    started = first_loss(network)
    fresh = first_loss(keras.models.clone_model(loop.starting_network(start, finetuning.settings)))
    assert started < fresh - 0.1, (started, fresh)  # a fresh network starts near ln 2


def test_a_finetuned_model_keeps_the_view_and_size_and_records_its_start(base, tmp_path):
    data, start = base
    quick_cnn_trainer.train(str(data), out=tmp_path / "run", epochs=2, seed=1, progress=False, init_from=start)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    starting = model_files.load_model(start)
    assert record["preset"] == "finetune" and record["init_from"]["sha256"] == starting.sha256
    assert record["init_from"]["path"] == str(start)
    finetuned = model_files.load_model(tmp_path / "run" / "my-galaxy-model.keras")
    assert finetuned.image_size == starting.image_size == 16
    assert finetuned.view_petro_radii == pytest.approx(starting.view_petro_radii)
    assert finetuned.sha256 != starting.sha256


def test_an_ensemble_can_be_the_starting_model(base, tmp_path):
    data, start = base
    quick_cnn_trainer.train(str(data), "modern", tmp_path / "other", epochs=2, image_size=16, seed=3, progress=False)
    ensemble = model_files.save_ensemble([start, tmp_path / "other" / "my-galaxy-model.keras"], tmp_path / "e.keras")
    metrics = quick_cnn_trainer.train(str(data), out=tmp_path / "run", epochs=1, progress=False, init_from=ensemble)
    assert metrics["n_galaxies"] == 18
    assert model_files.load_model(tmp_path / "run" / "my-galaxy-model.keras").image_size == 16


def test_pretrained_names_the_shipped_model():
    start = plan.starting_model("pretrained")
    assert start.path == model_files.pretrained_model_path() and start.image_size == 64
    assert start.view_petro_radii == pytest.approx(3.55, rel=1e-3)


@pytest.mark.parametrize("options, words", [
    ({"image_size": 32}, "keeps the input size"),
    ({"crop": 0.5}, "crop follows from"),
    ({"ensemble": 2}, "--ensemble with --init-from"),
])
def test_options_that_would_change_what_the_network_sees_are_refused(base, tmp_path, options, words):
    data, start = base
    with pytest.raises(UsageError, match=words):
        quick_cnn_trainer.train(str(data), out=tmp_path / "run", progress=False, init_from=start, **options)
    assert not (tmp_path / "run").exists()


def test_a_seed_preset_model_cannot_start_a_finetune(base, tmp_path, capsys):
    data, start = base
    quick_cnn_trainer.train(str(data), "seed", tmp_path / "seed", epochs=1, image_size=16, progress=False)
    with pytest.raises(SystemExit) as caught:
        quick_cnn_trainer.main(["--data", str(data), "--out", str(tmp_path / "run"), "--init-from",
                                str(tmp_path / "seed" / "my-galaxy-model.keras")])
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert caught.value.code == 2 and len(errors) == 1 and "seed-preset network" in errors[0]
    with pytest.raises(SystemExit):
        quick_cnn_trainer.main(["--data", str(data), "--preset", "seed", "--init-from", str(start)])
    assert "--preset seed with --init-from" in capsys.readouterr().err


def test_a_model_of_another_number_of_classes_cannot_start_a_finetune(base, tmp_path):
    import keras

    inputs = keras.Input((16, 16, 3))
    three = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    three.save(tmp_path / "three.h5")
    with pytest.raises(UsageError, match=r"output of shape \(None, 3\)"):
        plan.starting_model(tmp_path / "three.h5")
