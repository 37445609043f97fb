"""Galaxy images and labels for the trainer, read a batch at a time.

``--data`` comes in two forms:

- a directory written by ``sdss_query.py``: ``galaxy_images.npy`` (n, h, w, 3)
  uint8, ``galaxy_labels.npy`` (n,) and ``galaxy_data.csv``; the ``.npy`` files
  are opened with ``mmap_mode='r'`` (see :mod:`galaxy_classification.data.storage`);
- a CSV with columns ``file,label`` (image paths relative to the CSV, label 0 =
  spiral, 1 = elliptical), e.g. ``../shared/data/gz1/labels.csv``. Rows with an
  empty label (mergers, "don't know") are skipped and counted.

Images stay uint8 on disk, in the stores of :mod:`image_stores`; the batches
(float32 scaling, one-hot labels, augmentation, constant memory however many
galaxies there are) and the uint8 cache at the model's input resolution are
:mod:`input_pipeline`'s. This module opens a data set (images, labels,
catalogue, field of view) and splits it.

The split is the seed's: ``train_test_split(..., test_size=0.3, random_state=42)``
on galaxy *indices* (the same partition the seed got on arrays), then the last
20% of the training part for validation, as Keras' ``validation_split`` does.

Nothing here imports TensorFlow.

Example::

    from galaxy_classification.data import datasets
    data = datasets.open_training_data("data")
    train, validation, test = datasets.split_indices(len(data))
    first_images = data.images.read(train[:5])     # uint8 (5, 512, 512, 3)
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification.data import field_of_view, storage
from galaxy_classification.data.field_of_view import FieldOfView
from galaxy_classification.data.image_stores import IMAGE_SUFFIXES, ImageFiles, NpyImages, ShardedImages
from galaxy_classification.errors import DataFileError

TEST_SIZE = 0.3
VALIDATION_SPLIT = 0.2
SPLIT_RANDOM_STATE = 42



# --------------------------------------------------------------------------- data sets


@dataclass
class GalaxyData:
    """Galaxies from one ``--data`` or predict PATH.

    ``images`` is an :class:`NpyImages` or :class:`ImageFiles`; ``labels`` an
    int array (``None`` for unlabelled prediction inputs); ``sources`` names each
    galaxy (image file path, or row index of a ``.npy``); ``form`` is
    ``'directory'``, ``'csv'``, ``'npy'`` or ``'files'``; ``skipped`` counts CSV
    rows without a label. ``field`` is what the frames show (a
    :class:`FieldOfView`; None when nothing says), ``row_fields`` the
    petroR90 across of each frame when a CSV gives them one by one.
    ``catalogue`` is the table the galaxies came from, when there is one.
    ``images, labels = data`` unpacks like the seed's arrays.
    """

    path: Path
    form: str
    images: object
    labels: np.ndarray = None
    sources: list = field(default_factory=list)
    skipped: int = 0
    field: FieldOfView = None
    row_fields: np.ndarray = None
    catalogue: pd.DataFrame = None

    def __len__(self):
        return len(self.images)

    def __iter__(self):
        return iter((self.images, self.labels))

    def native_image_size(self):
        """Side in pixels of the (first) image, as stored."""
        if isinstance(self.images, NpyImages):
            return self.images.shape[1]
        return self.images.read_one(0).shape[0]


def open_training_data(path, field_of_view=None):
    """Open ``--data``: a directory of the three data files or a ``file,label`` CSV.

    Checks what can be checked without decoding every image (files present,
    lengths, shapes, dtypes, labels in {0, 1}, image files exist) and raises
    :class:`DataFileError` (a ``ValueError``) naming the file and the problem.
    ``field_of_view`` (petroR90 across) overrides whatever the data records.
    """
    path = Path(path)
    if path.is_dir():
        return _with_given_field(_open_directory(path), field_of_view)
    if path.suffix.lower() == ".csv":
        return _with_given_field(_open_labelled_csv(path), field_of_view)
    if not path.exists():
        raise DataFileError(f"--data {path}: no such directory or CSV file (make one with python -c \"import "
                            f"sdss_query; sdss_query.create_datafiles()\", or offline with python sdss_query.py "
                            f"--synthetic)")
    raise DataFileError(
        f"--data {path}: expected a directory holding {storage.IMAGES_FILE} and {storage.LABELS_FILE}, "
        "or a CSV file with columns file,label"
    )


def _with_given_field(data, petro_radii):
    if petro_radii is None:
        return data
    data.field = FieldOfView(float(petro_radii), source="given")
    data.row_fields = None
    return data


def directory_field(directory, what):
    """The recorded field of a data directory; the seed's defaults, said once, without one."""
    recorded = field_of_view.read_dataset_record(directory)
    if recorded is not None:
        return recorded
    return field_of_view.assume(field_of_view.SEED_FIELD, what,
                                f"no {field_of_view.DATASET_FILE} (an older data set, or the seed's own)")


def _open_directory(data_dir):
    shards = storage.shard_directories(data_dir)
    if shards is not None:
        return _open_shards(data_dir, shards)
    images_memmap, labels, catalogue = storage.open_datafiles(data_dir)
    del images_memmap
    images = NpyImages(data_dir / storage.IMAGES_FILE)
    sources = [str(index) for index in range(len(labels))]
    if catalogue is not None and "objid" in catalogue.columns:
        sources = [f"objid {objid}" for objid in catalogue["objid"]]
    field = directory_field(data_dir, str(data_dir))
    return GalaxyData(data_dir, "directory", images, labels, sources, field=field, catalogue=catalogue)


def _open_shards(data_dir, shards):
    """A directory of seed-format shards, read as one data set."""
    parts = [_open_directory(shard) for shard in shards]
    fields = {part.field.petro_radii for part in parts}
    if len(fields) > 1:
        raise DataFileError(f"{data_dir}: its shards record different fields of view {sorted(fields)}")
    catalogues = [part.catalogue for part in parts]
    catalogue = pd.concat(catalogues, ignore_index=True) if all(c is not None for c in catalogues) else None
    return GalaxyData(data_dir, "directory", ShardedImages([part.images for part in parts]),
                      np.concatenate([part.labels for part in parts]),
                      [source for part in parts for source in part.sources], field=parts[0].field,
                      catalogue=catalogue)


FIELD_COLUMN = "field_of_view"  # petroR90 across, one per image, in a CSV data set


def csv_field(csv_path, table):
    """``(field, row_fields)`` of a CSV data set: its ``field_of_view`` column,
    else a dataset.json beside it, else a Galaxy Zoo 1 table's documented
    frames (it has a ``gz1_class`` column), else ``(None, None)``."""
    if FIELD_COLUMN in table.columns:
        values = pd.to_numeric(table[FIELD_COLUMN].str.strip(), errors="coerce")
        bad = values[~(values > 0)]
        if len(bad):
            row = bad.index[0]
            raise DataFileError(f"{csv_path}: {FIELD_COLUMN} {table[FIELD_COLUMN][row]!r} in row {row + 2} is not a "
                                "positive number of petroR90 across")
        return None, values.to_numpy(dtype=np.float64)
    recorded = field_of_view.read_dataset_record(Path(csv_path).parent)
    if recorded is not None:
        return recorded, None
    if "gz1_class" in table.columns:
        return field_of_view.documented(field_of_view.GALAXY_ZOO_1_FIELD, f"{csv_path} (a Galaxy Zoo 1 table)"), None
    return None, None


def read_csv_table(path, required_columns, option=None):
    """A CSV as text columns (empty cells stay ''), or DataFileError naming the file (after ``option``,
    e.g. ``--label-corrections``, when it is an option's) and what is wrong."""
    path = Path(path)
    named = f"{option} {path}" if option else str(path)
    if not path.is_file():
        raise DataFileError(f"{named}: no such CSV file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFileError(f"{named}: not a readable CSV ({str(error).strip()})") from None
    missing = [column for column in required_columns if column not in table.columns]
    if missing:
        raise DataFileError(
            f"{named}: missing column(s) {', '.join(missing)}; expected {','.join(required_columns)}, "
            f"found {','.join(table.columns) or 'none'}"
        )
    return table


def _resolved_files(csv_path, file_column, some_missing_ok=False):
    """The listed files, relative to the CSV. Any missing one is an error, or,
    with ``some_missing_ok`` (prediction: those rows are reported as failed),
    only all of them (a wrong folder)."""
    files = [csv_path.parent / name.strip() for name in file_column]
    empty = [row for row, name in enumerate(file_column) if not name.strip()]
    if empty:
        raise DataFileError(f"{csv_path}: empty 'file' in row {empty[0] + 2} ({len(empty)} rows)")
    missing = [file for file in files if not file.is_file()]
    if missing and (len(missing) == len(files) or not some_missing_ok):
        raise DataFileError(f"{missing[0]}: image file missing ({len(missing)} of {len(files)} listed in {csv_path})")
    return files


def _open_labelled_csv(csv_path):
    table = read_csv_table(csv_path, ("file", "label"))
    label_text = table["label"].str.strip()
    has_label = label_text != ""
    labels = pd.to_numeric(label_text[has_label], errors="coerce")
    bad = labels[~labels.isin((0, 1))]
    if len(bad):
        row = bad.index[0]
        raise DataFileError(
            f"{csv_path}: label {table['label'][row]!r} in row {row + 2} is not 0 (spiral) or 1 (elliptical)"
        )
    labelled = table[has_label]
    if len(labelled) == 0:
        raise DataFileError(f"{csv_path}: no row has a label 0 or 1")
    files = _resolved_files(csv_path, labelled["file"])
    field, row_fields = csv_field(csv_path, labelled.reset_index(drop=True))
    return GalaxyData(
        csv_path, "csv", ImageFiles(files), labels.to_numpy(dtype=np.int64), [str(file) for file in files],
        skipped=int((~has_label).sum()), field=field, row_fields=row_fields,
        catalogue=labelled.reset_index(drop=True),
    )


def open_prediction_inputs(path, field_of_view=None):
    """Open one predict PATH: an image file, a directory of images, a CSV with a
    ``file`` column, a ``galaxy_images.npy`` or a data directory holding one.
    ``field_of_view`` (petroR90 across) overrides whatever the input records."""
    return _with_given_field(_open_prediction_inputs(Path(path)), field_of_view)


def _open_prediction_inputs(path):
    if path.is_dir():
        image_files = sorted(file for file in path.iterdir() if file.suffix.lower() in IMAGE_SUFFIXES)
        if not image_files and storage.shard_directories(path) is not None:
            data = _open_directory(path)
            data.form, data.labels = "npy", None
            return data
        if not image_files and (path / storage.IMAGES_FILE).is_file():
            return _open_prediction_inputs(path / storage.IMAGES_FILE)
        if not image_files:
            raise DataFileError(f"{path}: directory holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return GalaxyData(path, "files", ImageFiles(image_files), sources=[str(file) for file in image_files],
                          field=field_of_view.read_dataset_record(path))
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        images = NpyImages(path)
        catalogue_path = path.parent / storage.CATALOGUE_FILE
        catalogue = storage.read_catalogue(catalogue_path) if catalogue_path.is_file() else None
        if catalogue is not None and len(catalogue) != len(images):
            catalogue = None  # not this file's catalogue
        sources = [str(index) for index in range(len(images))]
        if catalogue is not None and "objid" in catalogue.columns:
            sources = [f"objid {objid}" for objid in catalogue["objid"]]
        return GalaxyData(path, "npy", images, sources=sources, field=directory_field(path.parent, str(path)),
                          catalogue=catalogue)
    if suffix == ".csv":
        table = read_csv_table(path, ("file",))
        files = _resolved_files(path, table["file"], some_missing_ok=True)
        field, row_fields = csv_field(path, table)
        return GalaxyData(path, "files", ImageFiles(files), sources=[str(file) for file in files],
                          field=field, row_fields=row_fields, catalogue=table)
    if suffix in IMAGE_SUFFIXES:
        return GalaxyData(path, "files", ImageFiles([path]), sources=[str(path)])
    raise DataFileError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}), directory, CSV or .npy file")


# --------------------------------------------------------------------------- split


def split_indices(n_galaxies, test_size=TEST_SIZE, validation_split=VALIDATION_SPLIT, random_state=SPLIT_RANDOM_STATE):
    """``(train, validation, test)`` index arrays, exactly the seed's partition.

    ``train_test_split`` of ``arange(n)`` shuffles the indices as it would shuffle
    the arrays; Keras' ``validation_split`` keeps the last
    ``floor(len * validation_split)`` rows of the training part for validation.
    """
    from sklearn.model_selection import train_test_split

    if n_galaxies < 4:
        raise DataFileError(f"{n_galaxies} galaxies are too few to split into training, validation and test")
    train_part, test = train_test_split(np.arange(n_galaxies), test_size=test_size, random_state=random_state)
    split_at = int(math.floor(len(train_part) * (1.0 - validation_split)))
    return train_part[:split_at], train_part[split_at:], test


def balanced_class_weights(labels):
    """``{0: w0, 1: w1}`` with ``w = n / (2 * n_class)`` (scikit-learn's 'balanced')."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)
    return {label: (len(labels) / (2.0 * count) if count else 0.0) for label, count in enumerate(counts)}


def one_hot(labels):
    """int labels (k,) -> float32 (k, 2): the categorical targets of the seed's model."""
    return np.eye(2, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def scale_images(images):
    """uint8 -> float32 in [0, 1]: the seed's min-max scaling with the uint8 range
    (0 and 255) as min and max, applied to one batch, never to the whole array."""
    return np.asarray(images, dtype=np.float32) * np.float32(1.0 / 255.0)
