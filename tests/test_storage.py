"""The data files on disk: atomic writes, exact ids, and clear errors when a file is wrong."""

import numpy as np
import pandas as pd
import pytest

from galaxy_classification import errors
from galaxy_classification.data import storage


def small_sample(n=6, size=8):
    catalogue = pd.DataFrame({
        "objid": [str(1237648720693755918 + i) for i in range(n)],
        "specObjID": [str(10133099161583616000 + i) for i in range(n)],
        "ra": np.linspace(10, 20, n),
    })
    labels = np.arange(n) % 2
    images = [np.full((size, size, 3), i, dtype=np.uint8) for i in range(n)]
    return catalogue, labels, images


def test_written_files_are_aligned_and_ids_exact(tmp_path):
    catalogue, labels, images = small_sample()
    storage.write_datafiles(tmp_path, catalogue, labels, iter(images), image_shape=(8, 8, 3))
    galaxy_images, galaxy_labels, read_back = storage.open_datafiles(tmp_path)
    assert galaxy_images.shape == (6, 8, 8, 3) and galaxy_images.dtype == np.uint8
    assert list(galaxy_labels) == [0, 1, 0, 1, 0, 1]
    assert [int(galaxy_images[i, 0, 0, 0]) for i in range(6)] == list(range(6))
    assert read_back["specObjID"].tolist() == catalogue["specObjID"].tolist()
    assert int(read_back["specObjID"][0]) == 10133099161583616000 > 2**63


def test_interrupted_write_keeps_previous_data_set(tmp_path):
    catalogue, labels, images = small_sample()
    storage.write_datafiles(tmp_path, catalogue, labels, iter(images), image_shape=(8, 8, 3))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def images_then_interrupt():
        yield images[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.write_datafiles(tmp_path, catalogue.iloc[:3], labels[:3], images_then_interrupt(),
                                image_shape=(8, 8, 3))
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert after == before  # old files intact, no temporary files left behind


def test_too_few_images_is_an_error_and_writes_nothing(tmp_path):
    catalogue, labels, images = small_sample()
    with pytest.raises(ValueError, match="6 catalogue rows"):
        storage.write_datafiles(tmp_path, catalogue, labels, iter(images[:4]), image_shape=(8, 8, 3))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / storage.IMAGES_FILE).unlink(), "galaxy_images.npy: missing"),
    (lambda d: (d / storage.LABELS_FILE).unlink(), "galaxy_labels.npy: missing"),
    (lambda d: (d / storage.IMAGES_FILE).write_bytes((d / storage.IMAGES_FILE).read_bytes()[:500]),
     "galaxy_images.npy: not a complete"),
    (lambda d: np.save(d / storage.LABELS_FILE, np.array([0, 1, 2, 0, 1, 0])), "0 \\(spiral\\) or 1"),
    (lambda d: np.save(d / storage.LABELS_FILE, np.array([0, 1, 0])), "3 labels but"),
    (lambda d: np.save(d / storage.IMAGES_FILE, np.zeros((6, 8, 8), np.uint8)), "expected \\(n, height, width, 3\\)"),
    (lambda d: np.save(d / storage.IMAGES_FILE, np.zeros((6, 8, 8, 3))), "dtype float64"),
    (lambda d: (d / storage.CATALOGUE_FILE).write_text("objid\n1\n2\n"), "2 rows but 6 labels"),
])
def test_damaged_data_directory_names_file_and_problem(tmp_path, damage, message):
    catalogue, labels, images = small_sample()
    storage.write_datafiles(tmp_path, catalogue, labels, iter(images), image_shape=(8, 8, 3))
    damage(tmp_path)
    with pytest.raises(errors.DataFileError, match=message):
        storage.open_datafiles(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(errors.DataFileError, match="not a directory"):
        storage.open_datafiles(tmp_path / "nowhere")
