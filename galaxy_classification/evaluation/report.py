"""An evaluation's files in one call: metrics.json, the pictures, the suspect labels.

Example::

    from galaxy_classification.evaluation import report
    metrics = report.write_evaluation_report(
        "results", test_labels, p_elliptical, load_images=lambda rows: images[rows],
        history=history.history)

metrics.json is written last, after every picture, so its presence means the
report is whole.
"""

import json
import math
import os
from pathlib import Path

import numpy as np

from galaxy_classification import CLASS_NAMES, ELLIPTICAL
from galaxy_classification.data.storage import write_text_atomic
from galaxy_classification.errors import UsageError
from galaxy_classification.evaluation.metrics import (
    agreement_report,
    calibration_report,
    classification_metrics,
    predicted_labels,
)
from galaxy_classification.evaluation.plots import (
    plot_accuracy_against_coverage,
    plot_confusion_matrix,
    plot_misclassified,
    plot_reliability_diagram,
    plot_roc_curve,
    plot_training_curves,
    validated_history,
)

METRICS_FILE = "metrics.json"


TRAINING_CURVES_FILE = "training_curves.png"


CONFUSION_MATRIX_FILE = "confusion_matrix.png"


ROC_CURVE_FILE = "roc_curve.png"


MISCLASSIFIED_FILE = "misclassified.png"


RELIABILITY_FILE = "reliability_diagram.png"


COVERAGE_FILE = "accuracy_vs_coverage.png"


SUSPECT_LABELS_FILE = "suspect_labels.csv"



def write_metrics_json(metrics, path, extra=None):
    """Write ``metrics`` (plus the ``extra`` entries, e.g. model and data paths) as JSON, atomically."""
    write_text_atomic(path, json.dumps(_merged(metrics, extra), indent=2) + "\n")



def _merged(metrics, extra):
    extra = dict(extra or {})
    clashes = sorted(set(extra) & set(metrics))
    if clashes:
        raise UsageError(f"extra must not replace metric entries; clashing keys: {', '.join(clashes)}")
    return _json_ready({**metrics, **extra})



def _json_ready(value):
    """Plain JSON types: numpy scalars and arrays unpacked, paths as text, NaN/inf as null."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a diverged loss; strict JSON has no NaN
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value



def suspect_labels(true_labels, p_elliptical, sources, objids=None, data_release="DR15", limit=200):
    """The galaxies whose labels are most likely wrong, most likely first: rank, source, objid, label,
    predicted, p_elliptical, confidence, label_quality, explore_url.

    The galaxies are those cleanlab's ``find_label_issues`` flags from the model's probabilities
    (confident learning; out of sample when the galaxies were held out from training), ranked by
    self-confidence: the probability the model gives the label, lowest first. With fewer than
    :data:`MIN_LABEL_ISSUE_GALAXIES` galaxies or one class only, the model's confident disagreements.
    """
    import pandas as pd

    from galaxy_classification import tables

    labels = np.asarray(true_labels, dtype=np.int64)
    p_elliptical = np.asarray(p_elliptical, dtype=np.float64)
    predicted = predicted_labels(p_elliptical, 0.5)
    confidence = np.where(predicted == ELLIPTICAL, p_elliptical, 1.0 - p_elliptical)
    label_quality = np.where(labels == ELLIPTICAL, p_elliptical, 1.0 - p_elliptical)
    order = _label_issues(labels, p_elliptical, predicted, label_quality)[:limit]
    objids = [""] * len(labels) if objids is None else [str(objid) for objid in objids]
    table = pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "source": [str(sources[index]) if sources is not None else str(index) for index in order],
        "objid": [objids[index] for index in order],
        "label": [CLASS_NAMES[labels[index]] for index in order],
        "predicted": [CLASS_NAMES[predicted[index]] for index in order],
        "p_elliptical": np.round(p_elliptical[order], 5),
        "confidence": np.round(confidence[order], 5),
        "label_quality": np.round(label_quality[order], 5),
    })
    return tables.with_explore_links(table, data_release)


MIN_LABEL_ISSUE_GALAXIES = 20  # cleanlab estimates the noise per class; fewer galaxies give no estimate


def _label_issues(labels, p_elliptical, predicted, label_quality):
    """Row numbers of the likely label errors, most likely first."""
    if len(labels) >= MIN_LABEL_ISSUE_GALAXIES and len(np.unique(labels)) == 2:
        from cleanlab.filter import find_label_issues

        probabilities = np.clip(np.column_stack([1.0 - p_elliptical, p_elliptical]), 1e-6, 1.0)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return np.asarray(find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence"))
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(label_quality[wrong], kind="stable")]



def write_evaluation_report(
    out_dir, true_labels, p_elliptical, load_images, history=None, sources=None, extra=None,
    threshold=0.5, max_galaxies=16, agreement=None, epoch_kept=None,
):
    """Write metrics.json and the pictures into ``out_dir``; return the metrics dict.

    Pictures: confusion_matrix.png, roc_curve.png, misclassified.png,
    reliability_diagram.png, accuracy_vs_coverage.png, and training_curves.png
    when ``history`` is given. metrics.json holds calibration (ECE, Brier, log
    loss, accuracy against coverage) and, with ``agreement`` (each galaxy's
    volunteer agreement), accuracy by agreement. Inputs are checked before
    anything is written; metrics.json is written last.
    """
    metrics = classification_metrics(true_labels, p_elliptical, threshold)
    metrics["calibration"] = calibration_report(true_labels, p_elliptical)
    by_agreement = agreement_report(true_labels, p_elliptical, agreement)
    if by_agreement is not None:
        metrics["accuracy_by_agreement"] = by_agreement
    if history is not None:
        validated_history(history)
    _merged(metrics, extra)  # a clash with extra fails now, not after the pictures
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if history is not None:
        plot_training_curves(history, out_dir / TRAINING_CURVES_FILE, epoch_kept)
    plot_confusion_matrix(metrics, out_dir / CONFUSION_MATRIX_FILE)
    plot_roc_curve(true_labels, p_elliptical, out_dir / ROC_CURVE_FILE, threshold=threshold)
    plot_reliability_diagram(metrics["calibration"], out_dir / RELIABILITY_FILE)
    plot_accuracy_against_coverage(true_labels, p_elliptical, out_dir / COVERAGE_FILE)
    plot_misclassified(
        load_images, true_labels, p_elliptical, out_dir / MISCLASSIFIED_FILE,
        max_galaxies=max_galaxies, sources=sources, threshold=threshold,
    )
    write_metrics_json(metrics, out_dir / METRICS_FILE, extra=extra)
    return metrics
