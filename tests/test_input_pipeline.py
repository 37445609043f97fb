"""The one input path: frames cropped and resized once into a uint8 cache, and streamed to predict.

What a user relies on: the network sees in training exactly what the saved
model would make of the same frame; a cache is never trusted once its source
or settings change, and a damaged or half-written one is never used; draft
decoding only saves time.
"""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxy_classification.data import datasets, image_stores, input_pipeline
from galaxy_classification.errors import DataFileError
from galaxy_classification.model import preprocessing

from trainer_helpers import galaxy_images, write_data_directory, write_image_csv

# Draft decoding (Pillow's DCT scaling at 1/2) against full decoding, then the
# same crop and antialiased resize to the modern preset's 64 px. Measured on the
# first 200 held-out Galaxy Zoo 1 frames: mean |difference| 2.2 levels of 255,
# 99th percentile 10, largest 62 (single pixels at stars and sharp edges); the
# shipped model's held-out accuracy 91.0% with drafts, 90.5% without, mean
# |change in p_elliptical| 0.013. The thresholds leave room above that, not for
# a wrong crop or scale (a misplaced crop differs by tens of levels on average).
DRAFT_MEAN_TOLERANCE = 3.0
DRAFT_P99_TOLERANCE = 15


def test_the_cache_holds_what_the_saved_model_would_make_of_each_frame(tmp_path):
    directory, images, _ = write_data_directory(tmp_path / "data", n_galaxies=10, size=48)
    data = datasets.open_training_data(directory)
    crops = np.full(10, 0.5)
    cache = input_pipeline.preprocessed_cache(data, tmp_path / "cache", crops, 16, progress=False)
    assert cache.shape == (10, 16, 16, 3)
    layer = preprocessing.GalaxyPreprocessing(0.5, 16)
    expected = np.clip(np.rint(np.asarray(layer(images)) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(cache.read(np.arange(10)), expected)


def test_per_frame_crops_read_only_their_square_and_still_equal_the_saved_models_view(tmp_path):
    directory, images, _ = write_data_directory(tmp_path / "data", n_galaxies=9, size=45)  # odd: rounding shows
    data = datasets.open_training_data(directory)
    crops = np.array([0.37, 0.5, 1.0] * 3)
    cache = input_pipeline.preprocessed_cache(data, tmp_path / "cache", crops, 12, progress=False)
    for row, crop in enumerate(crops):
        layer = preprocessing.GalaxyPreprocessing(crop, 12)
        expected = np.clip(np.rint(np.asarray(layer(images[row:row + 1])) * 255), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(cache.read([row]), expected)
    top, left, side = preprocessing.centre_window(45, 45, 0.37)
    rows = [7, 2, 4]
    part = image_stores.subset_images(data.images, [0, 2, 4, 6, 7])
    np.testing.assert_array_equal(data.images.read(rows, (top, left, side)),
                                  images[rows, top:top + side, left:left + side])
    np.testing.assert_array_equal(part.read([4, 1]), images[[7, 2]])
    np.testing.assert_array_equal(part.read([4, 1], (top, left, side)), images[[7, 2], top:top + side, left:left + side])


def test_both_data_forms_give_the_same_cache_for_the_same_frames(tmp_path):
    directory, images, labels = write_data_directory(tmp_path / "data", n_galaxies=6, size=32)
    (tmp_path / "png").mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "png" / f"{index}.png")  # lossless
    pd.DataFrame({"file": [f"png/{i}.png" for i in range(6)], "label": labels}).to_csv(tmp_path / "l.csv", index=False)
    from_directory = input_pipeline.preprocessed_cache(datasets.open_training_data(directory), tmp_path / "c1",
                                                       np.full(6, 0.7), 20, progress=False)
    from_csv = input_pipeline.preprocessed_cache(datasets.open_training_data(tmp_path / "l.csv", 5.12),
                                                 tmp_path / "c2", np.full(6, 0.7), 20, progress=False)
    np.testing.assert_array_equal(from_directory.read(np.arange(6)), from_csv.read(np.arange(6)))


def test_a_cache_is_reused_and_rebuilt_when_its_source_or_settings_change(tmp_path):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=6, size=40)
    data = datasets.open_training_data(csv_path, 8.0)
    first = input_pipeline.preprocessed_cache(data, tmp_path / "cache", np.full(6, 0.5), 20, progress=False)
    built_at = first.path.stat().st_mtime_ns
    again = input_pipeline.preprocessed_cache(data, tmp_path / "cache", np.full(6, 0.5), 20, progress=False)
    assert again.path == first.path and again.path.stat().st_mtime_ns == built_at  # reused, not rebuilt
    assert input_pipeline.cache_path(data, tmp_path, np.full(6, 0.5), 24) != first.path  # another size
    assert input_pipeline.cache_path(data, tmp_path, np.full(6, 0.6), 20).name != first.path.name  # another crop
    image = tmp_path / "images" / "003.jpeg"
    Image.fromarray(galaxy_images([1], size=40, seed=9)[0]).save(image)
    os.utime(image, ns=(built_at + 10**9, built_at + 10**9))
    changed = input_pipeline.preprocessed_cache(datasets.open_training_data(csv_path, 8.0), tmp_path / "cache",
                                                np.full(6, 0.5), 20, progress=False)
    assert changed.path != first.path
    assert not np.array_equal(changed.read([3]), first.read([3]))


def test_a_damaged_cache_is_rebuilt(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=6, size=32)
    data = datasets.open_training_data(directory)
    cache = input_pipeline.preprocessed_cache(data, tmp_path / "cache", np.full(6, 0.5), 16, progress=False)
    good = cache.read(np.arange(6))
    cache.path.write_bytes(cache.path.read_bytes()[:200])  # truncated
    rebuilt = input_pipeline.preprocessed_cache(data, tmp_path / "cache", np.full(6, 0.5), 16, progress=False)
    np.testing.assert_array_equal(rebuilt.read(np.arange(6)), good)


def test_an_interrupted_build_leaves_no_half_file(tmp_path):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=4, size=32)
    (tmp_path / "images" / "002.jpeg").write_bytes(b"<html>not a jpeg</html>")
    data = datasets.open_training_data(csv_path, 5.0)
    with pytest.raises(DataFileError, match="002.jpeg: unreadable image"):
        input_pipeline.preprocessed_cache(data, tmp_path / "cache", np.full(4, 1.0), 32, progress=False)
    assert not list((tmp_path / "cache").iterdir())


def draft_difference(paths, crop, size):
    files = image_stores.ImageFiles(paths)
    crops = np.full(len(paths), crop)
    rows = np.arange(len(paths))
    drafted = input_pipeline.preprocess_rows(files, rows, crops, size, draft=True).astype(int)
    full = input_pipeline.preprocess_rows(files, rows, crops, size, draft=False).astype(int)
    return np.abs(drafted - full)


def test_draft_decoding_gives_the_model_the_same_input_within_jpeg_noise(tmp_path):
    images = galaxy_images([0, 1, 0, 1], size=424, seed=3)
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.jpeg")
        Image.fromarray(image).save(paths[-1], quality=90)
    difference = draft_difference(paths, 0.35, 64)  # a quarter-size decode is enough here
    assert difference.mean() <= DRAFT_MEAN_TOLERANCE and np.percentile(difference, 99) <= DRAFT_P99_TOLERANCE


def test_draft_decoding_on_real_galaxy_zoo_frames(gz1_dir):
    table = pd.read_csv(gz1_dir / "labels.csv").head(32)
    difference = draft_difference([gz1_dir / name for name in table["file"]], 0.35, 64)
    assert difference.mean() <= DRAFT_MEAN_TOLERANCE and np.percentile(difference, 99) <= DRAFT_P99_TOLERANCE
    files = image_stores.ImageFiles([gz1_dir / name for name in table["file"]])
    rows = np.arange(len(table))
    right, wrong = (input_pipeline.preprocess_rows(files, rows, np.full(len(rows), crop), 64, draft=False)
                    for crop in (0.35, 0.40))
    assert np.abs(right.astype(int) - wrong.astype(int)).mean() > 2 * difference.mean()  # for scale


def test_draft_keeps_at_least_the_pixels_the_crop_needs():
    assert input_pipeline.draft_side(0.35, 64) == 183
    assert input_pipeline.draft_side(1.0, 64) == 64


def test_prepared_batches_cover_every_frame_in_order_with_per_frame_crops(tmp_path):
    directory, images, _ = write_data_directory(tmp_path / "data", n_galaxies=11, size=32)
    data = datasets.open_training_data(directory)
    crops = np.array([1.0] * 5 + [0.5] * 6)
    batches = list(input_pipeline.prepared_batches(data.images, crops, 16, batch_size=4))
    rows = np.concatenate([rows for rows, _ in batches])
    np.testing.assert_array_equal(rows, np.arange(11))
    stacked = np.concatenate([batch for _, batch in batches])
    assert stacked.dtype == np.float32 and stacked.shape == (11, 16, 16, 3)
    np.testing.assert_allclose(stacked[7], np.asarray(preprocessing.preprocess_images(images[7:8], 0.5, 16))[0], atol=1e-6)


def test_an_error_while_preparing_reaches_the_caller(tmp_path):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=4, size=32)
    (tmp_path / "images" / "003.jpeg").write_bytes(b"broken")
    data = datasets.open_training_data(csv_path, 5.0)
    with pytest.raises(DataFileError, match="003.jpeg"):
        list(input_pipeline.prepared_batches(data.images, np.ones(4), 16, batch_size=2))
