"""The trainer's input: both --data forms, every malformed input, the split, the batches."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from galaxy_classification.data import datasets, input_pipeline, storage
from galaxy_classification.errors import DataFileError

from trainer_helpers import galaxy_images, write_data_directory, write_image_csv


@pytest.fixture
def data_dir(tmp_path):
    directory, images, labels = write_data_directory(tmp_path / "data", n_galaxies=30, size=32)
    return directory, images, labels


def test_directory_form_reads_rows_in_the_order_asked(data_dir):
    directory, images, labels = data_dir
    data = datasets.open_training_data(directory)
    assert (data.form, len(data), data.skipped) == ("directory", 30, 0)
    np.testing.assert_array_equal(data.labels, labels)
    rows = [7, 2, 29, 2]
    batch = data.images.read(rows)
    assert batch.dtype == np.uint8 and batch.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(batch, images[rows])
    assert data.sources[0].startswith("objid ")
    unpacked_images, unpacked_labels = data  # the seed's `images, labels = get_data()`
    assert unpacked_images is data.images and unpacked_labels is data.labels


def test_reading_a_batch_leaves_no_memory_map_open(data_dir):
    directory, _, _ = data_dir
    data = datasets.open_training_data(directory)
    data.images.read(np.arange(30))
    with open("/proc/self/maps") as maps:
        assert str(directory / storage.IMAGES_FILE) not in maps.read()


def test_csv_form_skips_and_counts_rows_without_label(tmp_path):
    csv_path, images, labels = write_image_csv(tmp_path, n_galaxies=12, size=40, unlabelled=3)
    data = datasets.open_training_data(csv_path)
    assert (data.form, len(data), data.skipped) == ("csv", 9, 3)
    np.testing.assert_array_equal(data.labels, labels[3:])
    assert data.sources[0].endswith("images/003.jpeg")
    assert data.images.read_one(0).shape == (40, 40, 3)


# --------------------------------------------------------------------------- malformed input


def _expect_error(path, *fragments):
    with pytest.raises(DataFileError) as caught:
        datasets.open_training_data(path)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_directory_or_csv(tmp_path):
    _expect_error(tmp_path / "nowhere", "nowhere", "no such")
    _expect_error(tmp_path / "nowhere.csv", "nowhere.csv", "no such")


def test_missing_images_file(data_dir):
    directory, _, _ = data_dir
    (directory / storage.IMAGES_FILE).unlink()
    _expect_error(directory, storage.IMAGES_FILE, "missing")


def test_missing_labels_file(data_dir):
    directory, _, _ = data_dir
    (directory / storage.LABELS_FILE).unlink()
    _expect_error(directory, storage.LABELS_FILE, "missing")


def test_truncated_images_file(data_dir):
    directory, _, _ = data_dir
    path = directory / storage.IMAGES_FILE
    path.write_bytes(path.read_bytes()[:5000])
    _expect_error(directory, storage.IMAGES_FILE, "not a complete .npy")


def test_images_and_labels_of_different_lengths(data_dir):
    directory, _, labels = data_dir
    np.save(directory / storage.LABELS_FILE, labels[:-2])
    _expect_error(directory, storage.LABELS_FILE, "28 labels", "30 images")


def test_catalogue_of_different_length(data_dir):
    directory, _, _ = data_dir
    catalogue = storage.read_catalogue(directory / storage.CATALOGUE_FILE)
    catalogue.iloc[:-1].to_csv(directory / storage.CATALOGUE_FILE, index=False)
    _expect_error(directory, storage.CATALOGUE_FILE, "29 rows")


def test_images_of_wrong_shape(data_dir):
    directory, images, _ = data_dir
    np.save(directory / storage.IMAGES_FILE, images[..., 0])
    _expect_error(directory, storage.IMAGES_FILE, "shape")


def test_labels_outside_zero_and_one(data_dir):
    directory, _, labels = data_dir
    bad = labels.copy()
    bad[3] = 2
    np.save(directory / storage.LABELS_FILE, bad)
    _expect_error(directory, storage.LABELS_FILE, "0 (spiral) or 1 (elliptical)")


def test_csv_missing_columns(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"file": ["a.jpg"], "gz1_class": ["spiral"]}).to_csv(path, index=False)
    _expect_error(path, "labels.csv", "missing column(s) label")


def test_csv_label_outside_zero_and_one(tmp_path):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=4, size=32)
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    table.loc[2, "label"] = "spiral"
    table.to_csv(csv_path, index=False)
    _expect_error(csv_path, "labels.csv", "'spiral'", "row 4")


def test_csv_missing_image_file(tmp_path):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=4, size=32)
    (tmp_path / "images" / "002.jpeg").unlink()
    _expect_error(csv_path, "002.jpeg", "image file missing")


# --------------------------------------------------------------------------- split and batches


@pytest.mark.parametrize("n_galaxies", [10, 57, 150])
def test_split_is_the_seeds_partition_on_arrays(n_galaxies):
    train, validation, test = datasets.split_indices(n_galaxies)
    assert len(set(train) | set(validation) | set(test)) == n_galaxies
    assert not (set(train) & set(validation) or set(train) & set(test) or set(validation) & set(test))
    images = np.arange(n_galaxies) * 10 + 3  # stand-in arrays, as the seed split them
    labels = np.arange(n_galaxies) % 2
    x_train, x_test, _, _ = train_test_split(images, labels, test_size=0.3, random_state=42)
    split_at = int(len(x_train) * 0.8)  # keras validation_split=0.2: the last 20%
    np.testing.assert_array_equal(images[train], x_train[:split_at])
    np.testing.assert_array_equal(images[validation], x_train[split_at:])
    np.testing.assert_array_equal(images[test], x_test)


def test_batches_are_scaled_float32_with_one_hot_labels(data_dir):
    directory, images, labels = data_dir
    data = datasets.open_training_data(directory)
    rows = np.arange(3, 25)
    batches = input_pipeline.GalaxyBatches(data.images, rows, data.labels, 8, datasets.scale_images,
                                     class_weights={0: 0.5, 1: 2.0})
    assert len(batches) == 3
    x, y, weights = batches[2]
    assert x.dtype == np.float32 and x.shape == (6, 32, 32, 3)
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x, images[19:25] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(y.argmax(axis=1), labels[19:25])
    np.testing.assert_array_equal(weights, np.where(labels[19:25] == 1, 2.0, 0.5))


def test_shuffled_batches_cover_every_row_each_epoch_reproducibly(data_dir):
    directory, _, _ = data_dir
    data = datasets.open_training_data(directory)

    def epochs(seed):
        batches = input_pipeline.GalaxyBatches(data.images, np.arange(30), data.labels, 7, datasets.scale_images,
                                         shuffle=True, seed=seed)
        orders = []
        for _ in range(2):
            orders.append(np.concatenate([batches.rows(i) for i in range(len(batches))]))
            batches.on_epoch_end()
        return orders

    first, second = epochs(3)
    assert sorted(first) == list(range(30)) and sorted(second) == list(range(30))
    assert not np.array_equal(first, second)  # reshuffled between epochs
    np.testing.assert_array_equal(epochs(3)[0], first)


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([1] * 30 + [0] * 10)
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    weights = datasets.balanced_class_weights(labels)
    np.testing.assert_allclose([weights[0], weights[1]], expected)


# --------------------------------------------------------------------------- predict inputs


def test_every_predict_path_form(tmp_path, data_dir):
    directory, _, _ = data_dir
    csv_path, _, _ = write_image_csv(tmp_path / "gz", n_galaxies=5, size=36)
    forms = {
        "one image": (tmp_path / "gz" / "images" / "001.jpeg", 1),
        "image directory": (tmp_path / "gz" / "images", 5),
        "csv": (csv_path, 5),
        "npy": (directory / storage.IMAGES_FILE, 30),
        "data directory": (directory, 30),
    }
    for name, (path, count) in forms.items():
        data = datasets.open_prediction_inputs(path)
        assert len(data) == len(data.sources) == count, name
        batches = input_pipeline.prepared_batches(data.images, np.ones(count), 16, batch_size=4)
        np.testing.assert_array_equal(np.concatenate([rows for rows, _ in batches]), np.arange(count))
    with pytest.raises(DataFileError, match="no such file"):
        datasets.open_prediction_inputs(tmp_path / "absent.jpg")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataFileError, match="notes.txt: not an image"):
        datasets.open_prediction_inputs(tmp_path / "notes.txt")


def test_frames_of_different_sizes_are_prepared_together(tmp_path):
    from PIL import Image

    from galaxy_classification.model import preprocessing

    frames = [galaxy_images([index % 2], size)[0] for index, size in enumerate([30, 30, 40, 30])]
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{index}.png")
    data = datasets.open_prediction_inputs(tmp_path)
    [(rows, batch)] = list(input_pipeline.prepared_batches(data.images, np.full(4, 0.5), 16, batch_size=8))
    assert list(rows) == [0, 1, 2, 3] and batch.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(batch[2], np.asarray(preprocessing.preprocess_images(frames[2][None], 0.5, 16))[0],
                               atol=1e-6)
