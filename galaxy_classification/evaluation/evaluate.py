"""Judge a saved model on labelled galaxies: the report, every galaxy's probabilities, the labels to check.

``quick_cnn_trainer.py evaluate --model M --data D --out O`` writes into O the
report of :mod:`galaxy_classification.evaluation.report` (metrics.json and the
pictures), the per-galaxy results table and ``suspect_labels.csv``: the
galaxies the model most confidently disagrees with, where label errors hide.
"""

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification import tables
from galaxy_classification.data import datasets, image_stores, storage
from galaxy_classification.inference.results import catalogue_objids, data_release_of, results_table, write_results

GALLERY_FILE = "gallery.html"


def evaluate(model, data, out=".", progress: bool = True, crop: float = None, field_of_view: float = None,
             predictions: str = "predictions.csv") -> dict:
    """Judge a saved model on every galaxy of labelled ``data``; return the metrics.

    Parameters
    ----------
    model : str or Path
        A ``.keras`` or ``.h5`` model saved by the trainer.
    data : str or Path
        A ``sdss_query`` directory or a ``file,label`` CSV.
    out : str or Path
        Directory for metrics.json, the pictures, the results table and suspect_labels.csv.
    progress : bool
        Show a progress bar.
    crop : float, optional
        The centre fraction of every frame, overriding the model's field of view.
    field_of_view : float, optional
        petroR90 across of the frames, when the data does not record it.
    predictions : str
        The results table's name inside ``out``: .csv, .ecsv, .fits or .vot.

    Returns
    -------
    dict
        The metrics, as in metrics.json.
    """
    from galaxy_classification.evaluation import metrics, report

    tables.table_format(predictions)
    storage.check_can_write(out, "--out")
    galaxies = datasets.open_training_data(data, field_of_view)
    from galaxy_classification.model import files as model_files  # Keras starts only once the data is good

    classifier = model_files.load_classifier(model)
    crops = classifier.crop_policy(crop).crops(galaxies, what=str(galaxies.path))
    probabilities = model_files.predict_probabilities(classifier, galaxies.images, crops, progress=progress)
    with storage.staged_outputs(out) as staging:  # the report, the table and the suspects appear together
        scores = _write_evaluation(classifier, galaxies, probabilities, crops, model, data, staging, predictions)
    print(metrics.format_metrics(scores))
    print(f"metrics, pictures, {predictions}, {report.SUSPECT_LABELS_FILE} (the labels most likely wrong) and "
          f"{GALLERY_FILE} (every galaxy, to look at and correct by eye) in {out}/")
    return scores


def _write_evaluation(classifier, galaxies, probabilities, crops, model, data, out, predictions):
    from galaxy_classification.evaluation import metrics, report
    from galaxy_classification.model import files as model_files

    scores = report.write_evaluation_report(
        out, galaxies.labels, probabilities[:, 1],
        load_images=functools.partial(images_for_display, galaxies.images),
        sources=galaxies.sources, agreement=metrics.volunteer_agreement(galaxies.catalogue),
        extra={"command": "evaluate", "model": str(model or model_files.pretrained_model_path()), "data": str(data),
               "skipped_unlabelled": galaxies.skipped,
               "field_of_view": {"model": classifier.field_record(),
                                 "data": galaxies.field.to_json() if galaxies.field else None,
                                 "crop_fraction": round(float(np.median(crops)), 6)}},
    )
    objids, release = catalogue_objids(galaxies), data_release_of(galaxies)
    per_galaxy = results_table(pd.DataFrame({"source": galaxies.sources, "label": galaxies.labels}), probabilities,
                               objids=objids, data_release=None if objids is None else release)
    write_results(per_galaxy, Path(out) / predictions, classifier)
    suspects = report.suspect_labels(galaxies.labels, probabilities[:, 1], galaxies.sources, objids, release)
    tables.write_table(suspects, Path(out) / report.SUSPECT_LABELS_FILE)
    _write_gallery(classifier, galaxies, crops, per_galaxy, Path(out), data)
    return scores


def _write_gallery(classifier, galaxies, crops, per_galaxy, out, data):
    """gallery.html and gallery_thumbnails/: every galaxy as the model saw it, its label to correct by eye."""
    from galaxy_classification.inference import gallery

    page, folder = gallery.gallery_paths(out / GALLERY_FILE)
    names = gallery.write_thumbnails(galaxies.images, crops, classifier.image_size, folder)
    gallery.write_gallery(per_galaxy, names, page, f"{classifier.name} on {data}: {len(per_galaxy)} labelled galaxies",
                          kind="evaluate", page_key=f"{classifier.sha256[:16]}:{Path(str(data)).resolve()}")


def images_for_display(images, rows):
    """uint8 images of the given rows at one common size (files may differ in size)."""
    if isinstance(images, image_stores.NpyImages):
        return images.read(rows)
    from PIL import Image

    pictures = [images.read_one(row) for row in rows]
    side = pictures[0].shape[0]
    return np.stack([
        picture if picture.shape[:2] == (side, side)
        else np.asarray(Image.fromarray(picture).resize((side, side), Image.BILINEAR))
        for picture in pictures
    ])
