"""The three data files on disk: writing them atomically, opening them safely.

A data directory holds, row for row aligned:

    galaxy_data.csv     one catalogue row per galaxy (ids kept as exact text)
    galaxy_images.npy   (n, height, width, 3) uint8 colour cutouts
    galaxy_labels.npy   (n,) int labels, 0 = spiral, 1 = elliptical
    dataset.json        what the frames show (:mod:`field_of_view`)

Every output is first written to a hidden temporary file beside its final name
and renamed into place only when complete, so an interrupted run never leaves a
truncated file and never destroys the previous data set.
"""

import contextlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification.errors import DataFileError, UsageError, note


def check_can_write(path, option, directory=True):
    """Refuse, before any work or request, an output that cannot be written.

    ``path`` is a directory to write into (``directory=True``) or a file. What
    does not exist yet is fine as long as its nearest existing ancestor is a
    directory this process can create files in (tried, not guessed from the
    permission bits). Nothing is created.
    """
    import tempfile

    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a directory")
    if not directory and path.is_dir():
        raise UsageError(f"{option} {path}: is a directory; give a file name")
    ancestor = path if directory else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is a file, not a directory")
    try:
        tempfile.TemporaryFile(dir=ancestor).close()
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot write in {ancestor} ({error.strerror or error})") from None


CATALOGUE_FILE = "galaxy_data.csv"
IMAGES_FILE = "galaxy_images.npy"
LABELS_FILE = "galaxy_labels.npy"
ID_COLUMNS = ("objid", "specObjID")  # 64-bit ids: text, never float


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed
    and whatever was at ``path`` before is left untouched.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


LOCK_FILE = ".galaxy-classification.lock"
STAGING_PREFIX = ".incoming-"


@contextlib.contextmanager
def run_lock(out_dir):
    """Hold ``out_dir`` for this run: a second run into the same folder is refused while this one lives.

    The lock file names this process and host; a lock left by a process that has ended (on this host)
    is taken over, with a note.
    """
    import socket

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    me = f"{os.getpid()}@{socket.gethostname()}"
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = path.read_text(errors="replace").strip() if path.is_file() else ""
            if _holder_alive(holder):
                raise UsageError(f"--out {out_dir}: another run (process {holder}) is writing there; wait for it "
                                 f"or choose another --out (if no such run exists, delete {path})") from None
            note(f"{path}: left by process {holder or '(unknown)'}, which has ended; taking it over")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    try:
        os.write(descriptor, f"{me}\n".encode())
    finally:
        os.close(descriptor)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _holder_alive(holder):
    """Whether the process ``pid@host`` of a lock still runs; one on another host is taken to run."""
    import socket

    pid, _, host = holder.partition("@")
    if not pid.isascii() or not pid.isdigit():
        return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_outputs(out_dir):
    """Yield a staging folder inside ``out_dir`` for a set of files; move them all into ``out_dir`` on success.

    The moves are renames within one folder, done with SIGINT and SIGTERM held back, so an interrupted
    run leaves either the whole old set or the whole new one; the staging folder is removed either way.
    """
    import shutil
    import signal
    import tempfile
    import threading

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        yield staging
        held = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
        if held:
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for item in sorted(staging.iterdir()):
                target = out_dir / item.name
                if item.is_dir() and target.is_dir():  # a folder (thumbnails) replaces the old one whole
                    target.rename(staging / f"{item.name}.old")
                os.replace(item, target)
        finally:
            if held:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes_atomic(path, data):
    with atomic_output(path) as temporary:
        Path(temporary).write_bytes(data)


def write_text_atomic(path, text):
    write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(frame, path):
    with atomic_output(path) as temporary:
        frame.to_csv(temporary, index=False)


def read_catalogue(path):
    """Read a galaxy_data.csv keeping the 64-bit id columns as exact text."""
    return pd.read_csv(path, dtype={column: str for column in ID_COLUMNS})


SHARD_INDEX_FILE = "shards.json"
SHARD_NAME = "shard-{:05d}"


def write_sharded_datafiles(out_dir, catalogue, labels, images=None, image_shape=(512, 512, 3), progress=None,
                            field=None, shard_size=None):
    """The seed's three files in ``out_dir`` (``shard_size`` None), or shards
    of at most ``shard_size`` galaxies: ``out_dir/shard-00000/`` ..., each a
    seed-format directory with its own dataset.json, listed in
    ``out_dir/shards.json`` (written last, so a reader never sees a half set)."""
    import json

    if shard_size is None:
        return write_datafiles(out_dir, catalogue, labels, images, image_shape, progress, field)
    out_dir = Path(out_dir)
    labels = np.asarray(labels, dtype=np.int64)
    stream = None if images is None else iter(progress(images) if progress is not None else images)
    names = []
    for number, start in enumerate(range(0, len(labels), shard_size)):
        stop = min(start + shard_size, len(labels))
        shard_images = None if stream is None else (next(stream) for _ in range(stop - start))
        names.append(SHARD_NAME.format(number))
        write_datafiles(out_dir / names[-1], catalogue.iloc[start:stop].reset_index(drop=True), labels[start:stop],
                        shard_images, image_shape, None, field)
    index = {"shards": [{"name": name, "galaxies": int(min(shard_size, len(labels) - i * shard_size))}
                        for i, name in enumerate(names)], "galaxies": int(len(labels)), "shard_size": shard_size}
    write_text_atomic(out_dir / SHARD_INDEX_FILE, json.dumps(index, indent=2) + "\n")
    return out_dir


def shard_directories(data_dir):
    """The shard directories of a sharded data set in order, or None if ``data_dir`` is not one."""
    import json

    data_dir = Path(data_dir)
    index = data_dir / SHARD_INDEX_FILE
    if index.is_file():
        try:
            return [data_dir / entry["name"] for entry in json.loads(index.read_text())["shards"]]
        except (ValueError, KeyError, TypeError) as error:
            raise DataFileError(f"{index}: unreadable shard index ({error})") from None
    if (data_dir / IMAGES_FILE).exists() or (data_dir / LABELS_FILE).exists():
        return None
    found = sorted(path for path in data_dir.glob("shard-[0-9][0-9][0-9][0-9][0-9]") if path.is_dir())
    return found or None


def write_datafiles(out_dir, catalogue, labels, images=None, image_shape=(512, 512, 3), progress=None,
                    field=None):
    """Write the three data files of a sample into ``out_dir``.

    ``images`` is an iterable of uint8 arrays of ``image_shape``, one per
    catalogue row in order, or ``None`` to write only the catalogue and labels.
    They are streamed into a memory-mapped ``.npy`` so memory stays flat however
    many galaxies there are. ``progress`` wraps the iterable (e.g. tqdm).
    ``field`` (a :class:`field_of_view.FieldOfView`) goes into dataset.json
    beside the images. The files are renamed into place together at the end.
    """
    from galaxy_classification.data import field_of_view

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(catalogue):
        raise UsageError(f"{len(catalogue)} catalogue rows but {len(labels)} labels")
    with contextlib.ExitStack() as stack:
        csv_tmp = stack.enter_context(atomic_output(out_dir / CATALOGUE_FILE))
        labels_tmp = stack.enter_context(atomic_output(out_dir / LABELS_FILE))
        if images is not None:
            images_tmp = stack.enter_context(atomic_output(out_dir / IMAGES_FILE))
            _write_images(images_tmp, images, len(catalogue), image_shape, progress)
            if field is not None:
                record_tmp = stack.enter_context(atomic_output(out_dir / field_of_view.DATASET_FILE))
                Path(record_tmp).write_text(field_of_view.write_dataset_record(field))
        catalogue.to_csv(csv_tmp, index=False)
        with open(labels_tmp, "wb") as handle:
            np.save(handle, labels)
    return out_dir


def _write_images(path, images, n_images, image_shape, progress):
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n_images, *image_shape))
    written = 0
    try:
        iterable = progress(images) if progress is not None else images
        for index, image in enumerate(iterable):
            if index >= n_images:
                raise UsageError(f"more images than the {n_images} catalogue rows")
            if image.shape != tuple(image_shape) or image.dtype != np.uint8:
                raise UsageError(f"image {index} is {image.dtype} {image.shape}, expected uint8 {tuple(image_shape)}")
            array[index] = image
            written += 1
        if written != n_images:
            raise UsageError(f"{written} images for {n_images} catalogue rows")
        array.flush()
    finally:
        del array


def open_datafiles(data_dir):
    """Open a data directory for reading: ``(images, labels, catalogue)``.

    ``images`` is a read-only memory map (nothing is read until indexed);
    ``labels`` an int array; ``catalogue`` a DataFrame or ``None`` when no
    csv is present. Raises :class:`DataFileError` naming the file and problem.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataFileError(f"--data {data_dir}: not a directory (expected the folder written by sdss_query.py)")
    images = open_images(data_dir / IMAGES_FILE)
    labels = _load_labels(data_dir / LABELS_FILE)
    if len(labels) != len(images):
        raise DataFileError(
            f"{data_dir / LABELS_FILE}: {len(labels)} labels but {IMAGES_FILE} holds {len(images)} images"
        )
    catalogue = None
    catalogue_path = data_dir / CATALOGUE_FILE
    if catalogue_path.exists():
        try:
            catalogue = read_catalogue(catalogue_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise DataFileError(f"{catalogue_path}: not a readable CSV ({error})") from None
        if len(catalogue) != len(labels):
            raise DataFileError(f"{catalogue_path}: {len(catalogue)} rows but {len(labels)} labels")
    return images, labels, catalogue


def open_images(path):
    """Memory-map a galaxy_images.npy read-only, checking it is complete,
    (n, height, width, 3) and uint8; :class:`DataFileError` otherwise."""
    if not path.is_file():
        raise DataFileError(f"{path}: missing (write it with sdss_query.py)")
    try:
        images = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise DataFileError(f"{path}: not a complete .npy file ({error})") from None
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataFileError(f"{path}: shape {images.shape}, expected (n, height, width, 3)")
    if images.dtype != np.uint8:
        raise DataFileError(f"{path}: dtype {images.dtype}, expected uint8 (0-255 colour cutouts)")
    return images


def _load_labels(path):
    if not path.is_file():
        raise DataFileError(f"{path}: missing (write it with sdss_query.py)")
    try:
        labels = np.load(path)
    except (ValueError, OSError, EOFError) as error:
        raise DataFileError(f"{path}: not a complete .npy file ({error})") from None
    if labels.ndim != 1:
        raise DataFileError(f"{path}: shape {labels.shape}, expected one label per galaxy")
    if not np.issubdtype(labels.dtype, np.number) or not np.isin(labels, (0, 1)).all():
        raise DataFileError(f"{path}: labels must be 0 (spiral) or 1 (elliptical)")
    return labels.astype(np.int64)
