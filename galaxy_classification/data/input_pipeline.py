"""One input path for training and prediction: frames in, model-sized uint8 out.

Both data forms (an ``sdss_query`` directory's memory-mapped ``.npy``, a CSV's
image files) go through the same two steps, with the saved model's own
preprocessing (:func:`preprocessing.preprocess_images`: centre crop, antialiased
resize) so that what the network sees in training is what it sees in
``predict``:

- decoding, in a small thread pool (Pillow and NumPy release the GIL). A JPEG
  whose pixels will be shrunk anyway decodes in Pillow's draft mode at 1/2, 1/4
  or 1/8 scale (:func:`draft_side`), keeping at least the side the crop needs;
- crop and resize to the model's input, per group of frames that share a crop.

Training runs this once and keeps the result as a uint8 ``.npy`` cache keyed
by the data's identity (path, size, modification time of the source files),
every crop and the input size (:func:`preprocessed_cache`): later epochs and
later runs read small frames from it, and a changed source or setting makes a
new cache instead of reusing a stale one. Prediction streams the same steps
with the next batch prepared in a thread while the model runs the current one
(:func:`prepared_batches`). Memory stays flat in the number of galaxies.
"""

import dataclasses
import functools
import hashlib
import math
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from galaxy_classification.data import storage
from galaxy_classification.data.datasets import one_hot
from galaxy_classification.data.image_stores import NpyImages, ShardedImages
from galaxy_classification.errors import DataFileError

CACHE_VERSION = 3  # bump when the cached pixels would change for the same inputs
DECODE_WORKERS = 2
CHUNK = 64


def draft_side(crop_fraction, image_size):
    """The smallest frame side whose centre ``crop_fraction`` still has
    ``image_size`` pixels: what a draft decode must keep."""
    return int(math.ceil(image_size / max(crop_fraction, 1e-6)))


def read_rows(images, rows, min_side=None, pool=None):
    """uint8 frames of ``rows``: a list (files may differ in size) or an array (.npy)."""
    if isinstance(images, NpyImages):
        return images.read(rows)
    reader = (lambda row: images.read_one(row, min_side))
    return list(pool.map(reader, rows)) if pool is not None else [reader(row) for row in rows]


def preprocess_rows(images, rows, crops, image_size, pool=None, draft=True, as_float=False, audit=None):
    """The frames of ``rows`` cropped (``crops[row]``) and resized, in order:
    uint8, or float32 in [0, 1] with ``as_float`` (the network's input).
    ``audit`` (a :class:`FrameAudit`) looks at every frame read."""
    from galaxy_classification.model import preprocessing

    convert = preprocessing.preprocess_images if as_float else preprocessing.preprocess_to_uint8
    rows = np.asarray(rows)
    output = np.empty((len(rows), image_size, image_size, 3), dtype=np.float32 if as_float else np.uint8)
    for crop in np.unique(crops[rows]):
        positions = np.flatnonzero(crops[rows] == crop)
        if isinstance(images, NpyImages) and crop < 1.0:  # read only the kept square: 1 / crop² fewer bytes
            window = preprocessing.centre_window(*images.shape[1:3], crop)
            windows = images.read(rows[positions], window)
            for row, frame in zip(rows[positions], windows) if audit is not None else ():
                audit.look(frame, f"row {row}", image_size)
            output[positions] = np.asarray(convert(windows, 1.0, image_size))
            continue
        frames = read_rows(images, rows[positions], draft_side(crop, image_size) if draft else None, pool)
        for row, frame in zip(rows[positions], frames) if audit is not None else ():
            audit.look(frame, _frame_name(images, row), draft_side(crop, image_size))
        shapes = [frame.shape for frame in frames]
        for shape in set(shapes):
            picks = [index for index, other in enumerate(shapes) if other == shape]
            output[positions[picks]] = np.asarray(convert(np.stack([frames[index] for index in picks]),
                                                          float(crop), image_size))
    return output


def _frame_name(images, row):
    return images.paths[row].name if hasattr(images, "paths") else f"row {row}"


def audit_sample(images, crops, image_size, audit, size=256):
    """Look at up to ``size`` frames spread over ``images`` (training that reads its frames as they are)."""
    rows = np.unique(np.linspace(0, len(images) - 1, min(size, len(images))).astype(int))
    audit.sampled = len(rows) < len(images)
    for row in rows:
        frame = images.read(np.array([row]))[0] if isinstance(images, NpyImages) else images.read_one(row)
        audit.look(frame, _frame_name(images, row), draft_side(float(crops[row]), image_size))
    return audit


# --------------------------------------------------------------------------- the cache


def cache_key(data, crops, image_size, draft):
    """What the cached pixels depend on: the source files' identity, every crop, the size."""
    if isinstance(data.images, NpyImages):
        sources = data.images.source_paths
    else:
        sources = [data.path, *data.images.paths]
    identity = hashlib.sha1()
    for path in sources:
        stat = os.stat(path)
        identity.update(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    identity.update(np.round(np.asarray(crops, dtype=np.float64), 6).tobytes())
    identity.update(f"|{CACHE_VERSION}|{image_size}|{len(data)}|{draft}".encode())
    return identity.hexdigest()[:16]


def cache_path(data, cache_dir, crops, image_size, draft=True):
    crops = np.asarray(crops, dtype=np.float64)
    crop_name = f"{crops[0]:.3g}" if np.all(crops == crops[0]) else "various"
    stem = Path(data.path).stem if Path(data.path).suffix else Path(data.path).name
    return Path(cache_dir) / f"{stem}-crop{crop_name}-{image_size}px-{cache_key(data, crops, image_size, draft)}.npy"


def preprocessed_cache(data, cache_dir, crops, image_size, progress=True, draft=True, audit=None):
    """An :class:`NpyImages` of every frame of ``data`` cropped (``crops``, one
    per frame) and resized to ``image_size``: built once, reused while its
    source and settings are unchanged, rebuilt when damaged. An interrupted
    build leaves no file behind. ``audit`` looks at every frame of a build."""
    from tqdm.auto import tqdm

    crops = np.broadcast_to(np.asarray(crops, dtype=np.float64), (len(data),)).copy()
    if isinstance(data.images, ShardedImages):  # one cache file per shard, read as one
        return ShardedImages([
            preprocessed_cache(dataclasses.replace(data, path=store.path.parent, images=store), cache_dir,
                               crops[start:stop], image_size, progress, draft, audit)
            for store, start, stop in zip(data.images.stores, data.images.offsets[:-1], data.images.offsets[1:])])
    target = cache_path(data, cache_dir, crops, image_size, draft)
    if target.is_file():
        try:
            cached = NpyImages(target)
            if cached.shape == (len(data), image_size, image_size, 3):
                return cached
        except DataFileError:
            pass  # damaged: built again below
    target.parent.mkdir(parents=True, exist_ok=True)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (len(data), image_size, image_size, 3)}
    # written through a file, not a memory map: the pages of a map held open for the
    # whole build would count in resident memory and grow with the number of galaxies
    with storage.atomic_output(target) as temporary, ThreadPoolExecutor(DECODE_WORKERS) as pool, \
            open(temporary, "wb") as cache, tqdm(total=len(data), desc=f"preparing {image_size}px images",
                                                 unit="img", disable=not progress) as bar:
        np.lib.format.write_array_header_1_0(cache, header)
        for start in range(0, len(data), CHUNK):
            rows = np.arange(start, min(start + CHUNK, len(data)))
            cache.write(preprocess_rows(data.images, rows, crops, image_size, pool, draft, audit=audit).data)
            bar.update(len(rows))
    return NpyImages(target)


# --------------------------------------------------------------------------- prediction


def prepared_batches(images, crops, image_size, batch_size, draft=True, prefetch=2):
    """Yield ``(rows, float32 batch in [0, 1])`` over every frame in order, the
    next batches decoded and preprocessed in a thread while the caller uses
    the current one."""
    crops = np.broadcast_to(np.asarray(crops, dtype=np.float64), (len(images),))
    ready = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            with ThreadPoolExecutor(DECODE_WORKERS) as pool:
                for start in range(0, len(images), batch_size):
                    if stop.is_set():
                        return
                    rows = np.arange(start, min(start + batch_size, len(images)))
                    ready.put((rows, preprocess_rows(images, rows, crops, image_size, pool, draft, as_float=True)))
            ready.put(done)
        except BaseException as error:  # handed to the consumer, raised there
            ready.put(error)

    producer = threading.Thread(target=produce, name="prepare-batches", daemon=True)
    producer.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # let a blocked put() finish so the thread can end
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass


# --------------------------------------------------------------------------- training batches


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
