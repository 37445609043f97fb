"""Where the frames live, read a batch at a time, always uint8.

- :class:`NpyImages`: a ``(n, h, w, 3)`` uint8 ``.npy`` (an ``sdss_query``
  directory), mapped only for the time of one read;
- :class:`ShardedImages`: the shards of a sharded directory, as one store;
- :class:`RowSubset`: some rows of another store (a part of a data set);
- :class:`ImageFiles`: one image file per galaxy (a CSV or a folder), decoded
  with Pillow, in JPEG draft mode when fewer pixels are needed.

Nothing here imports TensorFlow.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxy_classification.data import storage
from galaxy_classification.errors import DataFileError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")


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

    def read(self, indices, window=None):
        """uint8 array ``(len(indices), h, w, 3)`` of the given rows, in the given
        order; with ``window`` (top, left, side) only that square of each frame,
        so a crop reads and copies only the pixels it keeps."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")  # ascending rows read the file forwards
        rows, columns = _window_slices(window)
        images = np.load(self.path, mmap_mode="r")
        try:
            picked = images[indices[order], rows, columns]
            batch = np.empty(picked.shape, dtype=np.uint8)
            batch[order] = picked
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

    def read(self, indices, window=None):
        indices = np.asarray(indices, dtype=np.int64)
        frame = self.shape[1:] if window is None else (window[2], window[2], 3)
        batch = np.empty((len(indices), *frame), dtype=np.uint8)
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        for shard in np.unique(shard_of):
            chosen = shard_of == shard
            batch[chosen] = self.stores[shard].read(indices[chosen] - self.offsets[shard], window)
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

    def read(self, indices, window=None):
        return self.images.read(self.rows[np.asarray(indices, dtype=np.int64)], window)


def _window_slices(window):
    """Row and column slices of ``window`` (top, left, side); the whole frame for None."""
    if window is None:
        return slice(None), slice(None)
    top, left, side = window
    return slice(top, top + side), slice(left, left + side)


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


class ForgivingImageFiles(ImageFiles):
    """Image files for ``predict``: an unreadable file (a truncated download, an
    HTML error page saved as .jpg) gives a blank frame and is remembered in
    ``problems`` (index → message) instead of ending a run over thousands of
    files; training and evaluation keep the strict :class:`ImageFiles`.
    ``small`` remembers the frames (index → (h, w)) with less than half the
    caller's ``min_side``: the model sees them upsampled more than 2×, so
    their probabilities mean little; ``grey`` the frames whose three channels
    are one (the model was trained on colour)."""

    BLANK = np.zeros((16, 16, 3), dtype=np.uint8)

    def __init__(self, paths):
        super().__init__(paths)
        self.problems = {}
        self.small = {}
        self.grey = set()

    def read_one(self, index, min_side=None):
        try:
            frame = super().read_one(index, min_side)
        except DataFileError as error:  # the message starts with the path, which the table has
            self.problems[index] = str(error).removeprefix(f"{self.paths[index]}: ")
            return self.BLANK
        if min_side is not None and 2 * min(frame.shape[:2]) < min_side:
            self.small[index] = frame.shape[:2]
        if _is_grey(frame):
            self.grey.add(index)
        return frame


@dataclass
class FrameAudit:
    """What a set of training frames holds that a model does badly on: the notes prediction gives
    (frames without colour, blank frames, frames too small for the model's view, frames not square),
    gathered while the frames are read anyway and said in one note."""

    looked_at: int = 0
    sampled: bool = False
    grey: list = field(default_factory=list)
    blank: list = field(default_factory=list)
    small: list = field(default_factory=list)
    not_square: list = field(default_factory=list)

    def look(self, frame, name, needed_side=None):
        """Look at one frame; ``needed_side`` is the side in pixels the model's view needs of it."""
        self.looked_at += 1
        height, width = frame.shape[:2]
        if frame.max() == frame.min():
            self.blank.append(name)
        elif _is_grey(frame):
            self.grey.append(name)
        if needed_side is not None and 2 * min(height, width) < needed_side:
            self.small.append(name)
        if height != width:
            self.not_square.append(name)

    def summary(self):
        """One sentence of what was found, or None."""
        found = [(len(names), what, names[0]) for names, what in (
            (self.blank, "blank (one colour)"), (self.grey, "without colour (grey)"),
            (self.small, "too small for the model's view (upsampled more than 2x)"),
            (self.not_square, "not square (squeezed to a square)")) if names]
        if not found:
            return None
        among = f"of a sample of {self.looked_at}" if self.sampled else f"of {self.looked_at}"
        return "; ".join(f"{count} {among} frames {what}, e.g. {example}" for count, what, example in found)


def _is_grey(frame):
    """Whether the three channels of ``frame`` are one. The middle row decides a
    colour frame (3 µs, against 33 µs for the whole frame, on prediction's hot
    path); only a frame whose middle row is grey is compared whole."""
    middle = frame[frame.shape[0] // 2]
    if not (np.array_equal(middle[:, 0], middle[:, 1]) and np.array_equal(middle[:, 1], middle[:, 2])):
        return False
    return np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(frame[..., 1], frame[..., 2])


# The largest image decoded: a header claiming more is refused before any pixel is read (a decompression
# bomb, or a survey mosaic rather than a cutout). SDSS cutouts are at most 2048² (4.2 million pixels).
MAX_IMAGE_PIXELS = 64 * 2**20


def decode_image(path, min_side=None):
    """RGB uint8 ``(h, w, 3)`` array of one image file, or DataFileError naming it.

    ``min_side``: the smallest side the caller needs. A JPEG then decodes in
    Pillow's draft mode at 1/2, 1/4 or 1/8 scale, the smallest that still has
    ``min_side`` pixels a side: several times faster than a full decode. An
    image of more than :data:`MAX_IMAGE_PIXELS` pixels is refused.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; here anything above ours is refused
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataFileError(f"{path}: {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} an image "
                                    "may have (a cutout, not a mosaic)")
            if min_side is not None and image.format == "JPEG":
                image.draft("RGB", (min_side, min_side))
            return _eight_bit_rgb(image, path)
    except DataFileError:
        raise
    except FileNotFoundError:
        raise DataFileError(f"{path}: image file missing") from None
    except Image.DecompressionBombError as error:
        raise DataFileError(f"{path}: too many pixels to decode ({error})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataFileError(f"{path}: unreadable image ({error})") from None


def _eight_bit_rgb(image, path):
    """uint8 RGB of a Pillow image. Pillow converts 16-bit grey to RGB by
    clipping at 255 (a 16-bit PNG turns white), so those pixels are scaled
    (65535 → 255) instead: a 16-bit PNG opens as mode I;16, or as I before
    Pillow 10.3. Other 32-bit integer or float pixels have no fixed scale."""
    sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")
    if sixteen_bit:
        grey = np.round(np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in ("I", "F"):
        raise DataFileError(f"{path}: {image.mode} pixels (32-bit integer or float) have no fixed scale to the "
                            f"0-255 a JPEG holds; save it as an 8-bit RGB JPEG or PNG (for survey images, e.g. "
                            f"with SDSS's asinh stretch)")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
