"""The pictures of an evaluation: curves, confusion matrix, ROC, reliability, coverage, misclassified galaxies.

Figures are drawn on ``matplotlib.figure.Figure`` objects rendered by the Agg
canvas, not through pyplot, so they work without a display, never touch the
global backend and cannot pile up as open pyplot figures over many calls.
Only :func:`show_on_screen_if_possible` uses pyplot, and only when a display
exists. Every file is written atomically. matplotlib is imported only when a
picture is drawn.
"""

import math
import os
import sys
from pathlib import Path

import numpy as np

from galaxy_classification import CLASS_NAMES, ELLIPTICAL, SPIRAL
from galaxy_classification.data.storage import atomic_output
from galaxy_classification.errors import UsageError, note
from galaxy_classification.evaluation.metrics import accuracy_at_coverage, predicted_labels, validate_predictions

DPI = 100


_SOURCE_NAME_CHARS = 26  # longest source name shown above a misclassified galaxy



def _new_figure(width, height):
    """A figure drawn by the Agg canvas, independent of pyplot and of any display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure



def _save_figure(figure, path):
    try:
        with atomic_output(path) as temporary:
            # the temporary name ends in .tmp, so the format must be explicit
            figure.savefig(temporary, format="png", dpi=DPI)
    finally:
        figure.clear()



def plot_training_curves(history, path, epoch_kept=None):
    """Loss and accuracy per epoch, training and validation, side by side;
    ``epoch_kept`` (1-based), the epoch whose weights were saved, is marked."""
    history = validated_history(history)
    figure = _new_figure(11, 4.2)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    accuracy_key = "accuracy" if "accuracy" in history else "acc"
    panels = [(loss_axes, "loss", "Loss"), (accuracy_axes, accuracy_key, "Accuracy")]
    for axes, key, title in panels:
        for series, label, style in ((key, "training", "-"), (f"val_{key}", "validation", "--")):
            values = history.get(series)
            if values:
                epochs = np.arange(1, len(values) + 1)
                marker = "o" if len(values) <= 30 else None
                axes.plot(epochs, values, style, marker=marker, markersize=4, label=label)
        axes.set_title(title if history.get(key) else f"{title} (not recorded)")
        axes.set_xlabel("Epoch")
        axes.set_ylabel(title.lower())
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
    _mark_kept_epoch(loss_axes, history.get("val_loss"), epoch_kept)
    for axes in (loss_axes, accuracy_axes):
        if axes.lines:
            axes.legend()
    figure.suptitle("Training curves")
    _save_figure(figure, path)



def validated_history(history):
    history = getattr(history, "history", history)  # a keras History object or its dict
    if not isinstance(history, dict) or not history.get("loss"):
        raise UsageError("history must be a dict like keras History.history with a non-empty 'loss' list")
    return {
        key: [float(value) for value in values]
        for key, values in history.items()
        if isinstance(values, (list, tuple, np.ndarray))  # per-epoch series only
    }



def _mark_kept_epoch(axes, validation_loss, epoch_kept):
    # the trainer says which epoch's weights it saved (early stopping restores them); a
    # history alone (a library caller's) only shows where validation loss was lowest
    if epoch_kept is not None:
        axes.axvline(epoch_kept, color="grey", linestyle=":", label=f"weights kept (epoch {epoch_kept})")
        return
    if not validation_loss or len(validation_loss) < 2 or np.isnan(validation_loss).all():
        return
    best_epoch = int(np.nanargmin(validation_loss)) + 1
    axes.axvline(best_epoch, color="grey", linestyle=":", label=f"lowest validation loss (epoch {best_epoch})")



def plot_confusion_matrix(metrics, path):
    """Counts and row percentages (share of each true class) in a shaded matrix."""
    counts = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    names = metrics["class_names"]
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)

    figure = _new_figure(5.6, 4.8)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        share = f"{shares[row, column]:.1%}" if row_totals[row, 0] else "-"
        colour = "white" if shares[row, column] > 0.6 else "black"
        axes.text(column, row, f"{count}\n({share})", ha="center", va="center", color=colour, fontsize=13)
    axes.set_xticks(range(len(names)), [f"{name}" for name in names])
    axes.set_yticks(range(len(names)), [f"{name}" for name in names])
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    axes.set_title(f"Confusion matrix: {metrics['n_galaxies']} test galaxies, accuracy {metrics['accuracy']:.1%}")
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.85)
    _save_figure(figure, path)



def plot_roc_curve(true_labels, p_elliptical, path, threshold=0.5):
    """ROC curve for finding ellipticals, AUC in the legend, the operating point marked."""
    from sklearn import metrics as skm

    labels, probabilities, threshold = validate_predictions(true_labels, p_elliptical, threshold)
    figure = _new_figure(5.2, 5.0)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], ":", color="grey", label="chance (AUC = 0.5)")
    present = np.unique(labels)
    if len(present) == 2:
        false_positive_rate, true_positive_rate, _ = skm.roc_curve(labels, probabilities)
        auc = skm.roc_auc_score(labels, probabilities)
        axes.plot(false_positive_rate, true_positive_rate, linewidth=2, label=f"model (AUC = {auc:.3f})")
        predicted = predicted_labels(probabilities, threshold)
        axes.plot(
            np.mean(predicted[labels == SPIRAL] == ELLIPTICAL),
            np.mean(predicted[labels == ELLIPTICAL] == ELLIPTICAL),
            "o", color="black", label=f"threshold p = {threshold:g}",
        )
        axes.legend(loc="lower right")
    else:
        only = CLASS_NAMES[present[0]]
        axes.text(
            0.5, 0.55, f"ROC curve undefined:\nall {len(labels)} test galaxies are {only}",
            ha="center", va="center", fontsize=12, transform=axes.transAxes,
            bbox={"facecolor": "white", "edgecolor": "grey"},
        )
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("False positive rate (spirals called elliptical)")
    axes.set_ylabel("True positive rate (ellipticals found)")
    axes.set_title("ROC curve, elliptical as the positive class")
    axes.grid(alpha=0.3)
    _save_figure(figure, path)



def plot_reliability_diagram(calibration_report, path):
    """Accuracy against the predicted class's mean probability, per bin, with the diagonal of honesty."""
    figure = _new_figure(5.2, 5.0)
    axes = figure.subplots()
    axes.plot([0.5, 1], [0.5, 1], ":", color="grey", label="perfectly calibrated")
    bins = calibration_report["reliability"]
    if bins:
        means = [entry["mean_probability"] for entry in bins]
        accuracies = [entry["accuracy"] for entry in bins]
        sizes = [20 + 200 * entry["galaxies"] / max(item["galaxies"] for item in bins) for entry in bins]
        axes.plot(means, accuracies, "-", color="tab:blue")
        axes.scatter(means, accuracies, s=sizes, color="tab:blue", zorder=3, label="model (area: galaxies in bin)")
    axes.set_xlim(0.48, 1.01)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("probability of the predicted class")
    axes.set_ylabel("fraction predicted correctly")
    axes.set_title(f"Reliability (ECE {calibration_report['expected_calibration_error']:.3f})")
    # the bins run along the diagonal from (0.5, 0.5) upwards: the lower right corner is always empty
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    _save_figure(figure, path)



def plot_accuracy_against_coverage(true_labels, p_elliptical, path):
    """Accuracy of the most confident galaxies as more and more of them are kept."""
    labels = np.asarray(true_labels)
    shares = np.linspace(0.05, 1.0, 96)
    curve = accuracy_at_coverage(labels, p_elliptical, shares)
    marked = accuracy_at_coverage(labels, p_elliptical)
    figure = _new_figure(5.6, 4.2)
    axes = figure.subplots()
    accuracies = [entry["accuracy"] for entry in curve.values()]
    axes.plot(shares, accuracies, color="tab:blue")
    for coverage, entry in marked.items():
        axes.plot(float(coverage), entry["accuracy"], "o", color="black")
    # the figures in one box, not beside points that crowd together near the top
    axes.text(0.03, 0.04, "\n".join(f"most confident {float(coverage):.0%}: {entry['accuracy']:.1%}"
                                    for coverage, entry in marked.items()),
              transform=axes.transAxes, fontsize=8, va="bottom", bbox={"facecolor": "white", "alpha": 0.85})
    # an axis from 50% (a coin toss on two classes) at least: a one-point difference stays one point
    axes.set_ylim(min(0.5, math.floor(10 * min(accuracies)) / 10), 1.005)
    axes.set_xlim(0.0, 1.02)
    axes.set_xlabel("coverage: share of galaxies kept, most confident first")
    axes.set_ylabel("accuracy of those kept")
    axes.set_title("Accuracy against coverage")
    axes.grid(alpha=0.3)
    _save_figure(figure, path)



def plot_misclassified(load_images, true_labels, p_elliptical, path, max_galaxies=16, sources=None, threshold=0.5):
    """A grid of the worst test errors, most confidently wrong first; returns their indices.

    ``load_images(indices)`` receives the chosen indices sorted ascending and
    returns their uint8 images ``(k, height, width, 3)`` in that order, so only
    those rows are ever read. With no errors the picture says so.
    """
    labels, probabilities, threshold = validate_predictions(true_labels, p_elliptical, threshold)
    if isinstance(max_galaxies, bool) or not isinstance(max_galaxies, (int, np.integer)) or max_galaxies < 1:
        raise UsageError(f"max_galaxies must be a positive integer, got {max_galaxies!r}")
    if sources is not None:
        sources = list(sources)  # by position, whatever index a pandas Series carries
        if len(sources) != len(labels):
            raise UsageError(f"sources has {len(sources)} entries but there are {len(labels)} galaxies")

    predicted = predicted_labels(probabilities, threshold)
    p_predicted = np.where(predicted == ELLIPTICAL, probabilities, 1 - probabilities)
    errors = np.flatnonzero(predicted != labels)
    worst = errors[np.argsort(-p_predicted[errors], kind="stable")][:max_galaxies]
    chosen = [int(index) for index in worst]
    if not chosen:
        _plot_no_errors(len(labels), path)
        return chosen

    images = _load_chosen_images(load_images, chosen)
    columns = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / columns)
    figure = _new_figure(max(2.5 * columns, 6.5), 2.75 * rows + 0.5)  # room for the title
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes, index, image in zip(grid, chosen, images):
        axes.imshow(image)
        title = (
            f"true {CLASS_NAMES[labels[index]]}\n"
            f"predicted {CLASS_NAMES[predicted[index]]} (p = {p_predicted[index]:.2f})"
        )
        if sources is not None:
            title = f"{_shortened(sources[index])}\n{title}"
        axes.set_title(title, fontsize=8.5)
    for axes in grid:
        axes.axis("off")
    figure.suptitle(
        f"Misclassified test galaxies: {len(chosen)} of {len(errors)} shown, most confidently wrong first"
    )
    _save_figure(figure, path)
    return chosen



def _load_chosen_images(load_images, chosen):
    sorted_indices = np.sort(np.asarray(chosen, dtype=np.int64))
    images = np.asarray(load_images(sorted_indices))
    if images.ndim not in (3, 4) or len(images) != len(sorted_indices):
        raise UsageError(
            f"load_images returned shape {images.shape} for {len(sorted_indices)} indices; "
            "expected (k, height, width, 3)"
        )
    position = {int(index): row for row, index in enumerate(sorted_indices)}
    return [images[position[index]] for index in chosen]



def _shortened(source):
    name = Path(str(source)).name or str(source)
    if len(name) <= _SOURCE_NAME_CHARS:
        return name
    keep = _SOURCE_NAME_CHARS - 1
    return f"{name[: keep // 2]}…{name[-(keep - keep // 2):]}"



def _plot_no_errors(n_galaxies, path):
    figure = _new_figure(6, 2.5)
    axes = figure.subplots()
    axes.axis("off")
    axes.text(
        0.5, 0.5, f"No misclassified galaxies\nall {n_galaxies} test galaxies were classified correctly",
        ha="center", va="center", fontsize=13, transform=axes.transAxes,
    )
    _save_figure(figure, path)



def display_available():
    """True when figures could be shown: macOS, Windows, or an X11/Wayland display."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))



def show_on_screen_if_possible(paths):
    """Open the saved pictures in windows when a display exists; otherwise do nothing.

    ``MPLBACKEND=Agg`` (as in the tests) or any other non-interactive backend
    also means do nothing. Blocks until the windows are closed.
    """
    if not display_available() or os.environ.get("MPLBACKEND", "").lower() == "agg":
        return
    import matplotlib
    import matplotlib.image
    import matplotlib.pyplot as pyplot

    if matplotlib.get_backend().lower() in ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template"):
        return  # no GUI toolkit found: the files on disk are the result
    figures = []
    try:
        for path in paths:
            picture = matplotlib.image.imread(path)
            height, width = picture.shape[:2]
            figure = pyplot.figure(Path(path).name, figsize=(width / DPI, height / DPI), dpi=DPI)
            figure.figimage(picture)
            figures.append(figure)
        pyplot.show()
    except Exception as error:  # a broken GUI toolkit must not lose a finished run
        note(f"could not show the figures on screen ({error}); they are saved on disk")
    finally:
        for figure in figures:
            pyplot.close(figure)
