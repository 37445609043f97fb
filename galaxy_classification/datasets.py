"""Galaxy images and labels for the trainer, read a batch at a time.

``--data`` comes in two forms:

- a directory written by ``sdss_query.py``: ``galaxy_images.npy`` (n, h, w, 3)
  uint8, ``galaxy_labels.npy`` (n,) and ``galaxy_data.csv``; the ``.npy`` files
  are opened with ``mmap_mode='r'`` (see :mod:`galaxy_classification.storage`);
- a CSV with columns ``file,label`` (image paths relative to the CSV, label 0 =
  spiral, 1 = elliptical), e.g. ``../shared/data/gz1/labels.csv``. Rows with an
  empty label (mergers, "don't know") are skipped and counted.

Images stay uint8 on disk. :class:`NpyImages` maps its file only for the time
of one read, so the pages a long epoch touches never pile up in the resident
memory of the process; :class:`GalaxyBatches` turns index lists into batches
(float32 scaling, one-hot labels, augmentation) with constant memory however many
galaxies there are. Cropping and resizing every epoch is slow, so both forms are
turned once into a uint8 ``.npy`` cache at the model's input resolution
(:mod:`input_pipeline`) and streamed from there.

The split is the seed's: ``train_test_split(..., test_size=0.3, random_state=42)``
on galaxy *indices* (the same partition the seed got on arrays), then the last
20% of the training part for validation, as Keras' ``validation_split`` does.

Nothing here imports TensorFlow; :func:`as_keras_dataset` imports Keras when called.

Example::

    from galaxy_classification import datasets
    data = datasets.open_training_data("data")
    train, validation, test = datasets.split_indices(len(data))
    first_images = data.images.read(train[:5])     # uint8 (5, 512, 512, 3)
"""

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification import field_of_view, storage
from galaxy_classification.field_of_view import FieldOfView
from galaxy_classification.storage import DataFileError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")
TEST_SIZE = 0.3
VALIDATION_SPLIT = 0.2
SPLIT_RANDOM_STATE = 42


# --------------------------------------------------------------------------- image stores


class NpyImages:
    """The images of a ``(n, h, w, 3)`` uint8 ``.npy`` file, read on demand.

    Every :meth:`read` maps the file, copies the requested rows and unmaps it
    again: a memory map that stays open counts every page it has touched in the
    process's resident memory, which would grow with the data set.
    """

    def __init__(self, path):
        self.path = Path(path)
        images = storage.open_images(self.path)  # the same checks as the data directory
        self.shape = tuple(int(side) for side in images.shape)
        del images

    def __len__(self):
        return self.shape[0]

    def read(self, indices):
        """uint8 array ``(len(indices), h, w, 3)`` of the given rows, in the given order."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")  # ascending rows read the file forwards
        images = np.load(self.path, mmap_mode="r")
        try:
            batch = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
            batch[order] = images[indices[order]]
        finally:
            del images
        return batch


    @property
    def source_paths(self):
        return [self.path]


class ShardedImages(NpyImages):
    """Several ``.npy`` image files read as one: row i of the whole is row
    i - offset of the shard holding it. Each read maps only the shards it touches."""

    def __init__(self, stores):
        self.stores = list(stores)
        shapes = {store.shape[1:] for store in self.stores}
        if len(shapes) != 1:
            raise DataFileError(f"shards hold images of different shapes {sorted(shapes)}")
        self.offsets = np.cumsum([0] + [len(store) for store in self.stores])
        self.shape = (int(self.offsets[-1]), *self.stores[0].shape[1:])
        self.path = self.stores[0].path

    @property
    def source_paths(self):
        return [store.path for store in self.stores]

    def read(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        batch = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        for shard in np.unique(shard_of):
            chosen = shard_of == shard
            batch[chosen] = self.stores[shard].read(indices[chosen] - self.offsets[shard])
        return batch


class RowSubset(NpyImages):
    """Some rows of an :class:`NpyImages`, read as a store of their own."""

    def __init__(self, images, rows):
        self.images, self.rows = images, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), *images.shape[1:])
        self.path = images.path

    @property
    def source_paths(self):
        return self.images.source_paths

    def read(self, indices):
        return self.images.read(self.rows[np.asarray(indices, dtype=np.int64)])


def subset_images(images, rows):
    """The images of ``rows`` as a store of the same kind."""
    if isinstance(images, NpyImages):
        return RowSubset(images, rows)
    return ImageFiles([images.paths[row] for row in rows])


class ImageFiles:
    """Image files (JPEG, PNG, ...) decoded with Pillow when read, as RGB uint8."""

    def __init__(self, paths):
        self.paths = [Path(path) for path in paths]

    def __len__(self):
        return len(self.paths)

    def read_one(self, index, min_side=None):
        return decode_image(self.paths[index], min_side)

    def read(self, indices):
        """uint8 array of the given images; they must all have the same size."""
        images = [self.read_one(index) for index in indices]
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise DataFileError(f"images of different sizes {sorted(shapes)} cannot form one batch")
        return np.stack(images) if images else np.empty((0, 0, 0, 3), np.uint8)


def decode_image(path, min_side=None):
    """RGB uint8 ``(h, w, 3)`` array of one image file, or DataFileError naming it.

    ``min_side``: the smallest side the caller needs. A JPEG then decodes in
    Pillow's draft mode at 1/2, 1/4 or 1/8 scale, the smallest that still has
    ``min_side`` pixels a side: several times faster than a full decode.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if min_side is not None and image.format == "JPEG":
                image.draft("RGB", (min_side, min_side))
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataFileError(f"{path}: image file missing") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataFileError(f"{path}: unreadable image ({error})") from None


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

    def crops(self, view_petro_radii, default=None):
        """The centre fraction of each frame that shows ``view_petro_radii``
        across (one per galaxy), or ``default`` where the field is unknown."""
        if self.row_fields is not None:
            return np.minimum(1.0, view_petro_radii / self.row_fields)
        if self.field is not None:
            return np.full(len(self), self.field.crop_for(view_petro_radii))
        return np.full(len(self), default)

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
        raise DataFileError(f"--data {path}: no such directory or CSV file")
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


def recorded_field(directory):
    """The field recorded in ``directory/dataset.json``, or None."""
    try:
        return field_of_view.read_dataset_record(directory)
    except ValueError as error:
        raise DataFileError(str(error)) from None


def directory_field(directory, what):
    """The recorded field of a data directory; the seed's defaults, said once, without one."""
    recorded = recorded_field(directory)
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
    recorded = recorded_field(Path(csv_path).parent)
    if recorded is not None:
        return recorded, None
    if "gz1_class" in table.columns:
        return field_of_view.documented(field_of_view.GALAXY_ZOO_1_FIELD, f"{csv_path} (a Galaxy Zoo 1 table)"), None
    return None, None


def _read_csv(path, required_columns):
    if not path.is_file():
        raise DataFileError(f"{path}: no such CSV file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFileError(f"{path}: not a readable CSV ({str(error).strip()})") from None
    missing = [column for column in required_columns if column not in table.columns]
    if missing:
        raise DataFileError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(required_columns)}, "
            f"found {','.join(table.columns) or 'none'}"
        )
    return table


def _resolved_files(csv_path, file_column):
    files = [csv_path.parent / name.strip() for name in file_column]
    empty = [row for row, name in enumerate(file_column) if not name.strip()]
    if empty:
        raise DataFileError(f"{csv_path}: empty 'file' in row {empty[0] + 2} ({len(empty)} rows)")
    missing = [file for file in files if not file.is_file()]
    if missing:
        raise DataFileError(f"{missing[0]}: image file missing ({len(missing)} of {len(files)} listed in {csv_path})")
    return files


def _open_labelled_csv(csv_path):
    table = _read_csv(csv_path, ("file", "label"))
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
                          field=recorded_field(path))
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
        table = _read_csv(path, ("file",))
        files = _resolved_files(path, table["file"])
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


# --------------------------------------------------------------------------- batches


class GalaxyBatches:
    """Batches ``(images, one-hot labels[, sample weights])`` over a list of indices.

    ``prepare`` turns a uint8 batch into the float32 model input (crop, resize,
    scale); ``augment(batch, rng)`` (training only) perturbs it. The order is
    reshuffled every epoch and the augmentation drawn from a generator seeded by
    (seed, epoch, batch), so a run is reproducible even with prefetching threads.
    ``max_batches`` makes an epoch the first that many batches of each shuffle.
    """

    def __init__(self, images, indices, labels, batch_size, prepare, shuffle=False, augment=None,
                 class_weights=None, seed=0, max_batches=None):
        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.prepare = prepare
        self.shuffle = shuffle
        self.augment = augment
        self.class_weights = class_weights
        self.seed = int(seed)
        self.max_batches = max_batches
        self.epoch = 0
        self.order = self._epoch_order()

    def __len__(self):
        batches = math.ceil(len(self.indices) / self.batch_size)
        return batches if self.max_batches is None else min(batches, self.max_batches)

    def _epoch_order(self):
        if not self.shuffle:
            return self.indices
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.indices)

    def rows(self, batch_index):
        return self.order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]

    def __getitem__(self, batch_index):
        if not 0 <= batch_index < len(self):
            raise IndexError(f"batch {batch_index} of {len(self)}")
        rows = self.rows(batch_index)
        batch = self.prepare(self.images.read(rows))
        if self.augment is not None:
            batch = self.augment(batch, np.random.default_rng([self.seed, self.epoch, batch_index]))
        if self.labels is None:
            return (batch,)
        labels = self.labels[rows]
        if self.class_weights is None:
            return batch, one_hot(labels)
        weights = np.array([self.class_weights[label] for label in labels], dtype=np.float32)
        return batch, one_hot(labels), weights

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._epoch_order()


@functools.cache
def _py_dataset_class():
    import keras

    class GalaxyPyDataset(keras.utils.PyDataset):
        """Keras' view of a :class:`GalaxyBatches`."""

        def __init__(self, batches, workers=1, max_queue_size=4):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, index):
            return self.batches[index]

        def on_epoch_end(self):
            self.batches.on_epoch_end()

    return GalaxyPyDataset


def as_keras_dataset(batches, workers=1, image_side=128, queue_bytes=32 * 2**20):
    """Wrap :class:`GalaxyBatches` as a ``keras.utils.PyDataset`` for ``fit``/``predict``.
    ``workers=2`` prepares the next batch in a thread while the model trains;
    at most ``queue_bytes`` of ready float32 batches wait (2 to 4 batches), so
    big images (the seed's 512²) do not pile up in memory."""
    batch_bytes = batches.batch_size * image_side**2 * 3 * 4
    max_queue_size = int(min(4, max(2, queue_bytes // batch_bytes)))
    return _py_dataset_class()(batches, workers=workers, max_queue_size=max_queue_size)
