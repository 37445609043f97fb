"""How well does a model tell spirals from ellipticals? The numbers.

Given the true labels (0 = spiral, 1 = elliptical) and the model's probability
that each galaxy is elliptical:

- :func:`classification_metrics`: confusion matrix, per-class precision /
  recall / F1 / support and ROC AUC (scikit-learn), as plain JSON-ready types;
  :func:`format_metrics` is the text the trainer prints;
- :func:`calibration_report`: expected calibration error (10 equal-width bins
  of the predicted class's probability), Brier score and log loss, the
  reliability curve, and the accuracy of the most confident 50%, 80%, 90% and
  100% of the galaxies;
- :func:`agreement_report`: accuracy by volunteer agreement when a data set
  carries Galaxy Zoo vote fractions (``p_el_debiased`` / ``p_cs_debiased``).

Nothing heavy (scikit-learn) is imported at import time.
"""

import numpy as np

from galaxy_classification import CLASS_NAMES, ELLIPTICAL, SPIRAL
from galaxy_classification.errors import UsageError

ECE_BINS = 10


COVERAGES = (0.5, 0.8, 0.9, 1.0)


AGREEMENT_LEVELS = (0.6, 0.8, 0.95)


FRACTION_COLUMNS = ("p_el_debiased", "p_cs_debiased")


_LABELS = [SPIRAL, ELLIPTICAL]  # class order of every table and matrix



def classification_metrics(true_labels, p_elliptical, threshold=0.5):
    """Confusion matrix, per-class report and ROC AUC as plain JSON-ready types.

    A galaxy is predicted elliptical when ``p_elliptical >= threshold``.
    ``roc_auc`` is ``None`` (with a ``roc_auc_note``) when the true labels hold
    only one class, because the ROC curve is then undefined.
    """
    from sklearn import metrics as skm

    labels, probabilities, threshold = validate_predictions(true_labels, p_elliptical, threshold)
    predicted = predicted_labels(probabilities, threshold)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=_LABELS, zero_division=0
    )
    result = {
        "n_galaxies": int(len(labels)),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "class_names": list(CLASS_NAMES),
        "confusion_matrix": skm.confusion_matrix(labels, predicted, labels=_LABELS).tolist(),
        "per_class": {
            CLASS_NAMES[label]: {
                "precision": float(precision[label]),
                "recall": float(recall[label]),
                "f1": float(f1[label]),
                "support": int(support[label]),
            }
            for label in _LABELS
        },
        "roc_auc": None,
        "threshold": threshold,
    }
    present = np.unique(labels)
    if len(present) == 2:
        result["roc_auc"] = float(skm.roc_auc_score(labels, probabilities))
    else:
        result["roc_auc_note"] = (
            f"undefined: the true labels hold only {CLASS_NAMES[present[0]]} galaxies"
        )
    return result



def validate_predictions(true_labels, p_elliptical, threshold):
    labels = np.asarray(true_labels)
    probabilities = np.asarray(p_elliptical)
    if labels.ndim != 1:
        raise UsageError(
            f"true_labels must be one label per galaxy (1-D), got shape {labels.shape}; "
            "for one-hot labels pass labels.argmax(axis=1)"
        )
    if probabilities.ndim != 1:
        raise UsageError(
            f"p_elliptical must be one probability per galaxy (1-D), got shape {probabilities.shape}; "
            "for softmax output pass probabilities[:, 1]"
        )
    if len(labels) != len(probabilities):
        raise UsageError(f"true_labels has {len(labels)} galaxies but p_elliptical has {len(probabilities)}")
    if len(labels) == 0:
        raise UsageError("true_labels and p_elliptical are empty: there are no test galaxies to evaluate")
    if labels.dtype.kind not in "biuf" or not np.isin(labels, _LABELS).all():
        raise UsageError("true_labels must be 0 (spiral) or 1 (elliptical)")
    if probabilities.dtype.kind not in "biuf":
        raise UsageError(f"p_elliptical must be numbers in [0, 1], got dtype {probabilities.dtype}")
    probabilities = probabilities.astype(np.float64)
    if not (np.isfinite(probabilities).all() and (probabilities >= 0).all() and (probabilities <= 1).all()):
        raise UsageError("p_elliptical must be probabilities in [0, 1] (no NaN or infinity)")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise UsageError(f"threshold must be a number in [0, 1], got {threshold!r}") from None
    if not 0 <= threshold <= 1:
        raise UsageError(f"threshold must be a number in [0, 1], got {threshold}")
    return labels.astype(np.int64), probabilities, threshold



def predicted_labels(probabilities, threshold):
    return np.where(probabilities >= threshold, ELLIPTICAL, SPIRAL)



def format_metrics(metrics):
    """The evaluation as readable text: accuracy, confusion matrix, per-class report, ROC AUC."""
    matrix = metrics["confusion_matrix"]
    names = metrics["class_names"]
    n_galaxies = metrics["n_galaxies"]
    correct = sum(matrix[index][index] for index in range(len(names)))
    lines = [
        f"Test galaxies: {n_galaxies} (predicted elliptical when p(elliptical) >= {metrics['threshold']:g})",
        f"Accuracy: {metrics['accuracy']:.1%} ({correct} of {n_galaxies} correct)",
        "",
        "Confusion matrix (rows: true class, columns: predicted class)",
    ]
    row_headers = [f"true {name}" for name in names]
    column_headers = [f"predicted {name}" for name in names]
    first_width = max(len(header) for header in row_headers)
    widths = [max(len(header), 6) for header in column_headers]
    lines.append(" " * first_width + "".join(f"  {header:>{width}}" for header, width in zip(column_headers, widths)))
    for header, row in zip(row_headers, matrix):
        lines.append(f"{header:<{first_width}}" + "".join(f"  {count:>{width}}" for count, width in zip(row, widths)))

    lines += ["", "Per-class report"]
    name_width = max(len("class"), *(len(name) for name in names))
    lines.append(f"{'class':<{name_width}}  precision  recall     F1  support")
    for name in names:
        report = metrics["per_class"][name]
        lines.append(
            f"{name:<{name_width}}  {report['precision']:>9.3f}  {report['recall']:>6.3f}"
            f"  {report['f1']:>5.3f}  {report['support']:>7d}"
        )
    lines.append("")
    if metrics["roc_auc"] is None:
        note = metrics.get("roc_auc_note", "undefined: only one class in the true labels")
        lines.append(f"ROC AUC: {note}")
    else:
        lines.append(f"ROC AUC: {metrics['roc_auc']:.3f}")
    calibrated = metrics.get("calibration")
    if calibrated:
        lines.append(f"Calibration: ECE {calibrated['expected_calibration_error']:.3f} ({calibrated['ece_bins']} bins), "
                     f"Brier {calibrated['brier_score']:.3f}, log loss {calibrated['log_loss']:.3f}")
        lines.append("Accuracy of the most confident: " + ", ".join(
            f"{float(coverage):.0%} {entry['accuracy']:.1%}" for coverage, entry in calibrated["accuracy_at_coverage"].items()))
    by_agreement = metrics.get("accuracy_by_agreement")
    if by_agreement:
        lines.append("Accuracy by volunteer agreement: " + ", ".join(
            f"{level} {entry['accuracy']:.1%} ({entry['galaxies']})" if entry["accuracy"] is not None
            else f"{level} - (0)" for level, entry in by_agreement.items()))
    return "\n".join(lines)



def expected_calibration_error(labels, p_elliptical, bins=ECE_BINS):
    """Sum over equal-width bins of the predicted class's probability of
    (share of galaxies in the bin) x |accuracy - mean probability| in the bin."""
    confidence, correct = _confidence_and_correct(labels, p_elliptical)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for index in range(bins):
        chosen = which == index
        if chosen.any():
            error += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(error)



def reliability_curve(labels, p_elliptical, bins=ECE_BINS):
    """Per non-empty bin: (mean probability, accuracy, count) of the predicted class."""
    confidence, correct = _confidence_and_correct(labels, p_elliptical)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [(float(confidence[which == index].mean()), float(correct[which == index].mean()),
             int((which == index).sum())) for index in range(bins) if (which == index).any()]



def accuracy_at_coverage(labels, p_elliptical, coverages=COVERAGES):
    """{coverage: accuracy of the most confident ``coverage`` share of the galaxies}."""
    confidence, correct = _confidence_and_correct(labels, p_elliptical)
    order = np.argsort(-confidence, kind="stable")
    result = {}
    for coverage in coverages:
        kept = order[: max(1, int(round(coverage * len(order))))]
        result[f"{coverage:g}"] = {"accuracy": float(correct[kept].mean()), "galaxies": int(len(kept)),
                                   "min_confidence": float(confidence[kept].min())}
    return result



def _confidence_and_correct(labels, p_elliptical):
    labels = np.asarray(labels, dtype=np.int64)
    p_elliptical = np.asarray(p_elliptical, dtype=np.float64)
    predicted = (p_elliptical >= 0.5).astype(np.int64)
    confidence = np.where(predicted == 1, p_elliptical, 1.0 - p_elliptical)
    return confidence, (predicted == labels).astype(np.float64)



def calibration_report(labels, p_elliptical):
    """ECE, Brier score, log loss, the reliability curve and accuracy against coverage."""
    from sklearn.metrics import brier_score_loss, log_loss

    labels = np.asarray(labels, dtype=np.int64)
    p_elliptical = np.clip(np.asarray(p_elliptical, dtype=np.float64), 0.0, 1.0)
    return {
        "expected_calibration_error": expected_calibration_error(labels, p_elliptical),
        "ece_bins": ECE_BINS,
        "brier_score": float(brier_score_loss(labels, p_elliptical, pos_label=1)),
        "log_loss": float(log_loss(labels, np.clip(p_elliptical, 1e-12, 1 - 1e-12), labels=[0, 1])),
        "reliability": [{"mean_probability": mean, "accuracy": accuracy, "galaxies": count}
                        for mean, accuracy, count in reliability_curve(labels, p_elliptical)],
        "accuracy_at_coverage": accuracy_at_coverage(labels, p_elliptical),
    }



def volunteer_agreement(catalogue):
    """The larger of the debiased elliptical and spiral vote fractions per
    galaxy, or None when the table does not carry them."""
    import pandas as pd

    if catalogue is None or not all(column in catalogue.columns for column in FRACTION_COLUMNS):
        return None
    fractions = [pd.to_numeric(catalogue[column], errors="coerce").to_numpy(dtype=float)
                 for column in FRACTION_COLUMNS]
    return np.fmax(*fractions)



def agreement_report(labels, p_elliptical, agreement, levels=AGREEMENT_LEVELS):
    """Accuracy over all galaxies and over those whose volunteers agreed at
    least each level; None without vote fractions."""
    if agreement is None:
        return None
    labels = np.asarray(labels, dtype=np.int64)
    correct = ((np.asarray(p_elliptical) >= 0.5).astype(np.int64) == labels)
    report = {"all": {"accuracy": float(correct.mean()), "galaxies": int(len(labels))}}
    for level in levels:
        chosen = np.asarray(agreement) >= level
        report[f">={level:g}"] = {"accuracy": float(correct[chosen].mean()) if chosen.any() else None,
                                  "galaxies": int(chosen.sum())}
    return report
