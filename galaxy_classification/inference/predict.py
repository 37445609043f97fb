"""Classify galaxy images with a saved model: files, folders, CSVs or a galaxy_images.npy in, one table out.

Each input is cropped to the sky the model was trained on
(:meth:`Classifier.crop_policy`); an unreadable file becomes a row with status
``failed`` and its reason instead of ending the run; images too small for the
model or without colour get a note. ``part=(k, N)`` classifies only the k-th of
N disjoint slices of the rows (:mod:`galaxy_classification.inference.parts`).
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification import CLASS_NAMES, tables
from galaxy_classification.data import datasets, image_stores, storage
from galaxy_classification.errors import note
from galaxy_classification.inference import gallery as gallery_module
from galaxy_classification.inference import parts
from galaxy_classification.inference.results import (
    UNCERTAIN,
    catalogue_objids,
    data_release_of,
    results_table,
    write_results,
)


def predict(paths, model=None, out="predictions.csv", progress: bool = True, crop: float = None,
            field_of_view: float = None, min_confidence: float = None, part: tuple = None,
            gallery: bool = False) -> pd.DataFrame:
    """Classify the galaxies in ``paths``; write and return the results table.

    Parameters
    ----------
    paths : sequence of str or Path
        Image files, folders of images, CSVs with a ``file`` column, or ``galaxy_images.npy`` files.
    model : str or Path, optional
        A ``.keras`` or ``.h5`` model (default: the shipped one).
    out : str or Path
        The table: .csv, .ecsv, .fits or .vot.
    progress : bool
        Show a progress bar.
    crop : float, optional
        The centre fraction of every frame, overriding the model's field of view.
    field_of_view : float, optional
        petroR90 across of the inputs, when they do not record it.
    min_confidence : float, optional
        Call a galaxy ``uncertain`` when its larger probability is below this.
    part : (int, int), optional
        (k, N): classify only the k-th of N slices of the rows, into ``OUT.part-k-of-N``.
    gallery : bool
        Also write ``OUT.html``, a page of every galaxy as the model saw it (:mod:`gallery`).

    Returns
    -------
    pandas.DataFrame
        source, p_spiral, p_elliptical, predicted, crop, [status, reason], [objid, explore_url].
    """
    tables.table_format(out)
    storage.check_can_write(out, "--out", directory=False)
    inputs = [datasets.open_prediction_inputs(path, field_of_view) for path in paths]
    from galaxy_classification.model import files as model_files  # Keras starts only once the inputs are good

    classifier = model_files.load_classifier(model)
    offsets = np.cumsum([0] + [len(galaxies) for galaxies in inputs])
    wanted = parts.part_rows(int(offsets[-1]), part) if part else np.arange(offsets[-1])
    pieces, views = [], []
    for galaxies, offset in zip(inputs, offsets[:-1]):
        rows = wanted[(wanted >= offset) & (wanted < offset + len(galaxies))] - offset
        if len(rows) == 0:
            continue
        images, crops = model_view(classifier, galaxies, rows, crop)
        piece = predict_rows(classifier, galaxies, rows, images, crops, min_confidence, progress)
        views.append((images, crops, piece))
        if part:
            piece = parts.labelled_part(piece, rows + offset, offsets[-1])
        pieces.append(piece)
    table = parts.with_status_filled(pd.concat(pieces, ignore_index=True)) if pieces else pd.DataFrame(
        columns=["source", "p_spiral", "p_elliptical", "predicted", "crop", parts.ROW_COLUMN, parts.TOTAL_COLUMN])
    target = write_results(table, parts.part_path(out, part) if part else out, classifier)
    if gallery:
        write_prediction_gallery(classifier, views, table, target)
    print_summary(table, target, (*CLASS_NAMES, UNCERTAIN) if min_confidence is not None else CLASS_NAMES)
    return table


def model_view(classifier, galaxies, rows, crop=None):
    """The images of ``rows`` of one input and the crop each is shown to ``classifier`` with."""
    crops = classifier.crop_policy(crop).crops(galaxies, what=str(galaxies.path))[rows]
    images = galaxies.images if len(rows) == len(galaxies) else image_stores.subset_images(galaxies.images, rows)
    return images, crops


def write_prediction_gallery(classifier, views, table, target):
    """``OUT.html`` and ``OUT_thumbnails/`` of a predict run (each input's rows, in table order)."""
    page, folder = gallery_module.gallery_paths(target)
    temporary, names = gallery_module.staging_folder(folder), []
    try:
        for images, crops, piece in views:
            readable = piece["status"].ne("failed").to_numpy() if "status" in piece.columns else None
            names += gallery_module.write_thumbnails(images, crops, classifier.image_size, temporary, len(names),
                                                     readable)
        gallery_module.replace_folder(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    gallery_module.write_gallery(table, names, page, f"{len(table)} galaxies classified by {classifier.name}")
    print(f"wrote {page} (open it in a browser; thumbnails in {folder.name}/)")


def predict_rows(classifier, galaxies, rows, images, crops, min_confidence=None, progress=True) -> pd.DataFrame:
    """The results of ``rows`` of one input, whose ``images`` are shown with ``crops``
    (:func:`model_view`); an unreadable file's row has status 'failed'."""
    from galaxy_classification.model import files as model_files

    if isinstance(images, image_stores.ImageFiles):
        images = image_stores.ForgivingImageFiles(images.paths)
    probabilities = model_files.predict_probabilities(classifier, images, crops, progress=progress)
    problems = getattr(images, "problems", {})
    probabilities[list(problems)] = np.nan
    status = reason = None
    if problems:
        status = np.where(np.isnan(probabilities[:, 0]), "failed", "ok")
        reason = [problems.get(index, "") for index in range(len(rows))]
    note_small_frames(images, crops, classifier.image_size)
    note_grey_frames(images)
    objids = catalogue_objids(galaxies)
    return results_table(
        pd.DataFrame({"source": [galaxies.sources[row] for row in rows]}), probabilities,
        min_confidence=min_confidence, after={"crop": np.round(crops, 4)}, status=status, reason=reason,
        objids=None if objids is None else [objids[row] for row in rows],
        data_release=None if objids is None else data_release_of(galaxies))


def print_summary(table: pd.DataFrame, target: Path, names) -> None:
    """One line of counts; the first failures and their reasons on stderr."""
    counts = table["predicted"].value_counts()
    failed = table[table["status"] == "failed"] if "status" in table.columns else None
    print(f"wrote {target}: {len(table)} galaxies, " + ", ".join(f"{counts.get(name, 0)} {name}" for name in names)
          + (f", {len(failed)} not classified (status 'failed', with the reason)" if failed is not None else ""))
    if failed is not None:
        for source, reason in zip(failed["source"][:5], failed["reason"][:5]):
            print(f"  {source}: {reason}", file=sys.stderr)
        if len(failed) > 5:
            print(f"  ... and {len(failed) - 5} more", file=sys.stderr)


def note_small_frames(images, crops, image_size: int) -> None:
    """Say which inputs the model saw upsampled more than 2× (a thumbnail, a
    too-tight cutout): their classes are guesses, though a class is given."""
    small = getattr(images, "small", {})
    if not small:
        return
    index, (height, width) = next(iter(sorted(small.items())))
    kept = max(1, round(min(height, width) * float(np.broadcast_to(crops, (len(images),))[index])))
    note(f"{len(small)} image(s) too small for the model, e.g. {images.paths[index].name}: {width}x{height} px, "
         f"whose crop keeps {kept} px across where the model looks at {image_size}; their probabilities mean little")


def note_grey_frames(images) -> None:
    """Say which inputs have no colour: SDSS gri colour carries part of the answer
    (grey copies of the held-out Galaxy Zoo galaxies score several points lower, models/README.md)."""
    grey = sorted(getattr(images, "grey", ()))
    if grey:
        note(f"{len(grey)} image(s) without colour (grey), e.g. {images.paths[grey[0]].name}: the model was trained "
             "on gri colour cutouts and is less accurate on grey ones")
