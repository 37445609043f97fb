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
import hashlib
import math
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from galaxy_classification import storage
from galaxy_classification.datasets import NpyImages, ShardedImages
from galaxy_classification.storage import DataFileError

CACHE_VERSION = 2  # bump when the cached pixels would change for the same inputs
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


def preprocess_rows(images, rows, crops, image_size, pool=None, draft=True, as_float=False):
    """The frames of ``rows`` cropped (``crops[row]``) and resized, in order:
    uint8, or float32 in [0, 1] with ``as_float`` (the network's input)."""
    from galaxy_classification import preprocessing

    convert = preprocessing.preprocess_images if as_float else preprocessing.preprocess_to_uint8
    rows = np.asarray(rows)
    output = np.empty((len(rows), image_size, image_size, 3), dtype=np.float32 if as_float else np.uint8)
    for crop in np.unique(crops[rows]):
        positions = np.flatnonzero(crops[rows] == crop)
        frames = read_rows(images, rows[positions], draft_side(crop, image_size) if draft else None, pool)
        shapes = [frame.shape for frame in frames]
        for shape in set(shapes):
            picks = [index for index, other in enumerate(shapes) if other == shape]
            output[positions[picks]] = np.asarray(convert(np.stack([frames[index] for index in picks]),
                                                          float(crop), image_size))
    return output


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


def preprocessed_cache(data, cache_dir, crops, image_size, progress=True, draft=True):
    """An :class:`NpyImages` of every frame of ``data`` cropped (``crops``, one
    per frame) and resized to ``image_size``: built once, reused while its
    source and settings are unchanged, rebuilt when damaged. An interrupted
    build leaves no file behind."""
    from tqdm.auto import tqdm

    crops = np.broadcast_to(np.asarray(crops, dtype=np.float64), (len(data),)).copy()
    if isinstance(data.images, ShardedImages):  # one cache file per shard, read as one
        return ShardedImages([
            preprocessed_cache(dataclasses.replace(data, path=store.path.parent, images=store), cache_dir,
                               crops[start:stop], image_size, progress, draft)
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
    shape = (len(data), image_size, image_size, 3)
    with storage.atomic_output(target) as temporary, ThreadPoolExecutor(DECODE_WORKERS) as pool:
        cache = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        try:
            with tqdm(total=len(data), desc=f"preparing {image_size}px images", unit="img",
                      disable=not progress) as bar:
                for start in range(0, len(data), CHUNK):
                    rows = np.arange(start, min(start + CHUNK, len(data)))
                    cache[rows] = preprocess_rows(data.images, rows, crops, image_size, pool, draft)
                    bar.update(len(rows))
            cache.flush()
        finally:
            del cache
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

