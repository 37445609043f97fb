"""The field of view travels with the data: recorded, read back, and used to crop.

What a user relies on: every data set says how much sky its frames show (in
petroR90 across), a model remembers what it was trained on, and a model shown
frames of another field crops them to the same sky, with no flags.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import quick_cnn_trainer
import sdss_query
from galaxy_classification import errors
from galaxy_classification.data import datasets, field_of_view, storage
from galaxy_classification.data.field_of_view import GALAXY_ZOO_1_FIELD, SEED_FIELD, CropPolicy, FieldOfView

from trainer_helpers import balanced_labels, galaxy_images, write_data_directory, write_image_csv

# --- the numbers -------------------------------------------------------------------------


def test_a_field_is_scale_factor_times_size_in_petrosian_radii():
    field = FieldOfView.from_cutouts(0.01, 512, "g", "DR15", radii_arcsec=[2.0, 5.0, float("nan")])
    assert field.petro_radii == pytest.approx(5.12)
    assert field.arcsec_range == (pytest.approx(10.24), pytest.approx(25.6))
    assert GALAXY_ZOO_1_FIELD.petro_radii == pytest.approx(0.024 * 423)


@pytest.mark.parametrize("frame, view, crop", [
    (5.12, 3.55, 3.55 / 5.12),      # the modern network on sdss_query's default cutouts
    (10.152, 3.55, 3.55 / 10.152),  # ... on Galaxy Zoo 1 frames
    (10.24, 5.12, 0.5),             # frames twice as wide: the central half
    (2.56, 5.12, 1.0),              # frames narrower than the view: the whole frame, never more
])
def test_the_crop_shows_the_models_view(frame, view, crop):
    assert FieldOfView(frame).crop_for(view) == pytest.approx(crop)


def test_a_field_must_be_a_positive_number_of_radii():
    for bad in (0, -1.0, float("nan"), "5"):
        with pytest.raises(ValueError, match="petroR90 across"):
            FieldOfView(bad)
    with pytest.raises(ValueError, match="band"):
        FieldOfView(5.0, band="u")


def test_the_record_round_trips_through_json(tmp_path):
    field = FieldOfView.from_cutouts(0.02, 256, "g", "DR17", radii_arcsec=[3.0])
    (tmp_path / "dataset.json").write_text(field_of_view.write_dataset_record(field))
    assert field_of_view.read_dataset_record(tmp_path) == field
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="dataset.json"):
        field_of_view.read_dataset_record(tmp_path)


# --- recorded by the tools that make frames, read back by the trainer ---------------------------


def test_the_synthetic_sky_records_its_field(tmp_path):
    sdss_query.create_datafiles(6, source="synthetic", out_dir=tmp_path, image_size=32, image_scale_factor=0.04,
                                seed=1)
    record = json.loads((tmp_path / "dataset.json").read_text())["field_of_view"]
    assert record["petro_radii"] == pytest.approx(1.28) and record["image_size"] == 32
    assert record["scale_factor"] == 0.04 and record["band"] == "g"
    catalogue = storage.read_catalogue(tmp_path / storage.CATALOGUE_FILE)
    np.testing.assert_allclose(catalogue["cutout_scale"], 0.04 * catalogue["petroR90_g"], rtol=1e-6)
    data = datasets.open_training_data(tmp_path)
    assert data.field.petro_radii == pytest.approx(1.28) and data.field.source == "recorded"


def test_a_directory_without_a_record_is_read_as_the_seeds_defaults_and_says_so(tmp_path, capsys):
    write_data_directory(tmp_path / "old", n_galaxies=6, size=16)
    with pytest.warns(errors.GalaxyNote, match="no dataset.json") as notes:
        data = datasets.open_training_data(tmp_path / "old")
    assert data.field.petro_radii == SEED_FIELD.petro_radii and data.field.source == "assumed"
    assert len(notes) == 1


def test_a_csv_states_its_field_in_a_column_or_a_record_beside_it(tmp_path, capsys):
    csv_path, _, _ = write_image_csv(tmp_path / "column", n_galaxies=6, size=16, field_of_view=8.0)
    data = datasets.open_training_data(csv_path)
    np.testing.assert_allclose(CropPolicy(4.0).crops(data), 0.5)

    csv_path, _, _ = write_image_csv(tmp_path / "record", n_galaxies=6, size=16)
    (csv_path.parent / "dataset.json").write_text(field_of_view.write_dataset_record(FieldOfView(6.0)))
    assert datasets.open_training_data(csv_path).field.petro_radii == 6.0

    csv_path, _, _ = write_image_csv(tmp_path / "given", n_galaxies=6, size=16, field_of_view=8.0)
    assert CropPolicy(3.0).crops(datasets.open_training_data(csv_path, field_of_view=12.0))[0] == pytest.approx(0.25)


def test_a_galaxy_zoo_1_table_is_read_with_the_documented_frames(tmp_path, capsys):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=6, size=16)
    table = pd.read_csv(csv_path)
    table["gz1_class"] = "elliptical"
    table.to_csv(csv_path, index=False)
    with pytest.warns(errors.GalaxyNote, match="Galaxy Zoo 1"):
        data = datasets.open_training_data(csv_path)
    assert data.field == GALAXY_ZOO_1_FIELD


def test_a_bad_field_column_names_the_row(tmp_path):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=6, size=16, field_of_view=5.0)
    table = pd.read_csv(csv_path)
    table.loc[3, "field_of_view"] = -2
    table.to_csv(csv_path, index=False)
    with pytest.raises(errors.DataFileError, match="row 5"):
        datasets.open_training_data(csv_path)


# --- a model trained on one field, shown another ------------------------------------------


def padded_frames(images):
    """The same galaxies in frames twice as wide at the same pixel scale (more sky around)."""
    n, side = images.shape[:2]
    frames = np.full((n, 2 * side, 2 * side, 3), 20, dtype=np.uint8)
    frames[:, side // 2:side // 2 + side, side // 2:side // 2 + side] = images
    return frames


def test_a_model_sees_the_same_sky_in_frames_of_another_field(tmp_path):
    labels = balanced_labels(24)
    images = galaxy_images(labels, size=32)
    narrow, wide = tmp_path / "narrow", tmp_path / "wide"
    for directory, frames, field in ((narrow, images, FieldOfView(4.0, 32)),
                                     (wide, padded_frames(images), FieldOfView(8.0, 64))):
        storage.write_datafiles(directory, pd.DataFrame({"objid": [str(i) for i in range(24)]}), labels,
                                images=iter(frames), image_shape=frames.shape[1:], field=field)
    assert quick_cnn_trainer.main(["--data", str(narrow), "--preset", "seed", "--epochs", "1",
                                   "--out", str(tmp_path / "model"), "--seed", "3"]) == 0
    model = str(tmp_path / "model" / "my-galaxy-model.keras")

    on_narrow = quick_cnn_trainer.predict([narrow], model=model, out=tmp_path / "narrow.csv", progress=False)
    on_wide = quick_cnn_trainer.predict([wide], model=model, out=tmp_path / "wide.csv", progress=False)

    assert on_narrow["crop"].eq(1.0).all() and on_wide["crop"].eq(0.5).all()
    np.testing.assert_allclose(on_wide["p_elliptical"], on_narrow["p_elliptical"], atol=1e-5)
    forced = quick_cnn_trainer.predict([wide], model=model, out=tmp_path / "forced.csv", progress=False, crop=1.0)
    assert not np.allclose(forced["p_elliptical"], on_narrow["p_elliptical"], atol=1e-3)  # the crop mattered


# --- the seed's .h5 contract ---------------------------------------------------------------


def test_the_h5_loads_in_plain_keras_and_takes_what_the_seed_fed_it(tmp_path):
    directory, images, labels = write_data_directory(tmp_path / "data", n_galaxies=24, size=24)
    assert quick_cnn_trainer.main(["--data", str(directory), "--epochs", "1", "--out", str(tmp_path / "run"),
                                   "--seed", "2"]) == 0
    seed_input, _ = quick_cnn_trainer.clean_data(images, labels)  # float32 in [0, 1], as the seed fed it
    np.save(tmp_path / "input.npy", seed_input)
    script = (
        "import sys, numpy, keras\n"
        f"model = keras.models.load_model({str(tmp_path / 'run' / 'my-galaxy-model.h5')!r})\n"
        f"probabilities = model.predict(numpy.load({str(tmp_path / 'input.npy')!r}), verbose=0)\n"
        f"numpy.save({str(tmp_path / 'plain.npy')!r}, probabilities)\n"
        "assert not any(name.startswith('galaxy_classification') for name in sys.modules)\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert finished.returncode == 0, finished.stderr
    plain = np.load(tmp_path / "plain.npy")
    table = quick_cnn_trainer.predict([directory], model=str(tmp_path / "run" / "my-galaxy-model.h5"),
                                      out=tmp_path / "p.csv", progress=False)
    np.testing.assert_allclose(plain[:, 1], table["p_elliptical"], atol=1e-5)
    keras_table = quick_cnn_trainer.predict([directory], model=str(tmp_path / "run" / "my-galaxy-model.keras"),
                                            out=tmp_path / "k.csv", progress=False)
    np.testing.assert_allclose(keras_table["p_elliptical"], table["p_elliptical"], atol=1e-5)
