"""Evaluation metrics, metrics.json and the report pictures (galaxy_classification.evaluation: metrics, plots, report).

Fast and offline: no TensorFlow, tiny images.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from galaxy_classification.evaluation import metrics as scores
from galaxy_classification.evaluation import plots, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPORT_PICTURES = ("confusion_matrix.png", "roc_curve.png", "misclassified.png")

# hand-checked: predictions 0 1 1 0 1 against 0 0 1 1 1
TINY_LABELS = [0, 0, 1, 1, 1]
TINY_P_ELLIPTICAL = [0.1, 0.6, 0.7, 0.4, 0.9]

HISTORY = {
    "loss": [0.9, 0.6, 0.45, 0.4],
    "val_loss": [0.95, 0.7, 0.5, 0.55],
    "accuracy": [0.55, 0.7, 0.8, 0.83],
    "val_accuracy": [0.5, 0.66, 0.78, 0.76],
}


def random_predictions(n_galaxies=200, seed=0):
    """Labels and an imperfect, informative classifier's p(elliptical)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_galaxies)
    p_elliptical = np.clip(0.5 + 0.35 * (2 * labels - 1) + rng.normal(0, 0.25, n_galaxies), 0, 1)
    return labels, p_elliptical


class ImageStore:
    """Fake test-set images: galaxy i is a 16x16 uint8 image filled with value i % 256.

    Records which rows were requested, as a memmap-backed loader would read them.
    """

    def __init__(self, n_galaxies):
        self.images = np.broadcast_to(
            (np.arange(n_galaxies) % 256).astype(np.uint8)[:, None, None, None], (n_galaxies, 16, 16, 3)
        )
        self.requests = []

    def __call__(self, indices):
        self.requests.append(np.array(indices))
        return np.array(self.images[indices])


def png_written(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def leftover_temporary_files(directory):
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))


# --------------------------------------------------------------------------- metrics


def test_tiny_example_is_what_a_hand_count_gives():
    metrics = scores.classification_metrics(TINY_LABELS, TINY_P_ELLIPTICAL)

    assert metrics["n_galaxies"] == 5
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["class_names"] == ["spiral", "elliptical"]
    assert metrics["confusion_matrix"] == [[1, 1], [1, 2]]
    assert metrics["per_class"]["spiral"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert metrics["per_class"]["elliptical"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    # pairs (spiral, elliptical) ranked correctly: 5 of 6
    assert metrics["roc_auc"] == pytest.approx(5 / 6)
    assert metrics["threshold"] == 0.5


def test_metrics_agree_with_scikit_learn_and_are_plain_json_types():
    labels, p_elliptical = random_predictions()
    predicted = (p_elliptical >= 0.5).astype(int)

    metrics = scores.classification_metrics(labels, p_elliptical)

    assert metrics["confusion_matrix"] == skm.confusion_matrix(labels, predicted).tolist()
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, p_elliptical))
    report = skm.classification_report(labels, predicted, output_dict=True)
    for label, name in enumerate(["spiral", "elliptical"]):
        ours = metrics["per_class"][name]
        assert ours["precision"] == pytest.approx(report[str(label)]["precision"])
        assert ours["recall"] == pytest.approx(report[str(label)]["recall"])
        assert ours["f1"] == pytest.approx(report[str(label)]["f1-score"])
        assert ours["support"] == report[str(label)]["support"]
    assert json.loads(json.dumps(metrics)) == metrics  # no numpy types anywhere


def test_threshold_decides_the_predicted_class_inclusively():
    metrics = scores.classification_metrics([0, 1, 1], [0.2, 0.7, 0.7], threshold=0.7)
    assert metrics["confusion_matrix"] == [[1, 0], [0, 2]]

    metrics = scores.classification_metrics([0, 1, 1], [0.2, 0.7, 0.7], threshold=0.75)
    assert metrics["confusion_matrix"] == [[1, 0], [2, 0]]
    assert metrics["threshold"] == 0.75


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_gives_no_roc_auc_and_says_why(label):
    metrics = scores.classification_metrics([label] * 4, [0.2, 0.4, 0.6, 0.8])

    assert metrics["roc_auc"] is None
    only = ["spiral", "elliptical"][label]
    assert only in metrics["roc_auc_note"]
    assert metrics["per_class"][only]["support"] == 4
    assert f"only {only}" in scores.format_metrics(metrics)


@pytest.mark.parametrize(
    "true_labels, p_elliptical, threshold, message",
    [
        ([0, 1, 1], [0.2, 0.8], 0.5, "3 galaxies"),
        ([0, 2, 1], [0.2, 0.8, 0.5], 0.5, "0 \\(spiral\\) or 1 \\(elliptical\\)"),
        ([0, -1], [0.2, 0.8], 0.5, "true_labels"),
        (["spiral", "elliptical"], [0.2, 0.8], 0.5, "true_labels"),
        ([0, 1], [0.2, 1.2], 0.5, "\\[0, 1\\]"),
        ([0, 1], [-0.1, 0.8], 0.5, "p_elliptical"),
        ([0, 1], [np.nan, 0.8], 0.5, "NaN"),
        ([0, 1], [[0.8, 0.2], [0.3, 0.7]], 0.5, "probabilities\\[:, 1\\]"),
        ([[1, 0], [0, 1]], [0.2, 0.8], 0.5, "argmax"),
        ([], [], 0.5, "empty"),
        ([0, 1], [0.2, 0.8], 1.5, "threshold"),
        ([0, 1], [0.2, 0.8], "high", "threshold"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(true_labels, p_elliptical, threshold, message):
    with pytest.raises(ValueError, match=message):
        scores.classification_metrics(true_labels, p_elliptical, threshold=threshold)


def test_format_metrics_shows_class_names_counts_and_report():
    text = scores.format_metrics(scores.classification_metrics(TINY_LABELS, TINY_P_ELLIPTICAL))

    assert "Accuracy: 60.0% (3 of 5 correct)" in text
    lines = text.splitlines()
    header = next(line for line in lines if "predicted spiral" in line)
    assert "predicted elliptical" in header
    assert next(line for line in lines if line.startswith("true spiral")).split()[-2:] == ["1", "1"]
    assert next(line for line in lines if line.startswith("true elliptical")).split()[-2:] == ["1", "2"]
    assert "precision" in text and "recall" in text and "F1" in text
    assert next(line for line in lines if line.startswith("spiral ")).split() == ["spiral", "0.500", "0.500", "0.500", "2"]
    assert next(line for line in lines if line.startswith("elliptical ")).split() == [
        "elliptical", "0.667", "0.667", "0.667", "3",
    ]
    assert "ROC AUC: 0.833" in text


# --------------------------------------------------------------------------- files


def test_evaluation_report_writes_every_file_and_json_equals_metrics(tmp_path):
    labels, p_elliptical = random_predictions(60)
    store = ImageStore(60)
    out_dir = tmp_path / "results" / "run"  # created by the report

    metrics = report.write_evaluation_report(out_dir, labels, p_elliptical, store, history=HISTORY)


    assert metrics == {**scores.classification_metrics(labels, p_elliptical),
                       "calibration": scores.calibration_report(labels, p_elliptical)}
    assert json.loads((out_dir / "metrics.json").read_text()) == metrics
    for name in (*REPORT_PICTURES, "training_curves.png", "reliability_diagram.png", "accuracy_vs_coverage.png"):
        assert png_written(out_dir / name), name
    assert leftover_temporary_files(out_dir) == []


def test_evaluation_report_without_history_has_no_training_curves_and_keeps_extra(tmp_path):
    labels, p_elliptical = random_predictions(30)
    extra = {"model": tmp_path / "m.keras", "preset": "modern", "history": {"loss": [np.float32(0.5), np.nan]}}

    metrics = report.write_evaluation_report(tmp_path, labels, p_elliptical, ImageStore(30), extra=extra)

    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == {**metrics, "model": str(tmp_path / "m.keras"), "preset": "modern", "history": {"loss": [0.5, None]}}
    assert all(png_written(tmp_path / name) for name in REPORT_PICTURES)
    assert not (tmp_path / "training_curves.png").exists()


def test_bad_input_writes_nothing(tmp_path):
    out_dir = tmp_path / "report"
    with pytest.raises(ValueError):
        report.write_evaluation_report(out_dir, [0, 1], [0.5], ImageStore(2))
    with pytest.raises(ValueError, match="accuracy"):
        report.write_evaluation_report(out_dir, [0, 1], [0.2, 0.8], ImageStore(2), extra={"accuracy": 1.0})
    with pytest.raises(ValueError, match="loss"):
        report.write_evaluation_report(out_dir, [0, 1], [0.2, 0.8], ImageStore(2), history={"accuracy": [0.5]})
    assert not out_dir.exists()


def test_write_metrics_json_replaces_an_old_file_atomically(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    metrics = scores.classification_metrics(TINY_LABELS, TINY_P_ELLIPTICAL)

    report.write_metrics_json(metrics, path, extra={"data": "data/"})

    assert json.loads(path.read_text()) == {**metrics, "data": "data/"}
    assert leftover_temporary_files(tmp_path) == []


def test_one_class_report_still_draws_every_picture(tmp_path):
    metrics = report.write_evaluation_report(tmp_path, [1, 1, 1], [0.9, 0.3, 0.8], ImageStore(3))

    assert metrics["roc_auc"] is None
    assert json.loads((tmp_path / "metrics.json").read_text())["roc_auc"] is None
    assert all(png_written(tmp_path / name) for name in REPORT_PICTURES)


def test_training_curves_without_validation_or_with_one_epoch(tmp_path):
    plots.plot_training_curves({"loss": [0.7], "accuracy": [0.6]}, tmp_path / "one_epoch.png")
    plots.plot_training_curves({"loss": [0.7, 0.5, np.nan]}, tmp_path / "loss_only.png")

    assert png_written(tmp_path / "one_epoch.png")
    assert png_written(tmp_path / "loss_only.png")


# --------------------------------------------------------------------------- misclassified galaxies


def test_misclassified_picks_most_confident_errors_first(tmp_path):
    labels = [0, 0, 1, 1, 0, 1, 0, 1]
    p_elliptical = [0.9, 0.2, 0.45, 0.05, 0.6, 0.99, 0.99, 0.3]
    # errors and the probability given to the wrong class:
    # 0 -> 0.90, 2 -> 0.55, 3 -> 0.95, 4 -> 0.60, 6 -> 0.99, 7 -> 0.70
    store = ImageStore(8)
    sources = [f"images/{index:018d}.jpeg" for index in range(8)]

    chosen = plots.plot_misclassified(store, labels, p_elliptical, tmp_path / "worst.png", max_galaxies=4, sources=sources)

    assert chosen == [6, 3, 0, 7]
    assert all(type(index) is int for index in chosen)
    assert len(store.requests) == 1
    np.testing.assert_array_equal(store.requests[0], [0, 3, 6, 7])  # only those rows, sorted
    assert png_written(tmp_path / "worst.png")

    every_error = plots.plot_misclassified(store, labels, p_elliptical, tmp_path / "all.png")
    assert every_error == [6, 3, 0, 7, 4, 2]


def test_misclassified_with_no_errors_draws_a_note_and_reads_no_images(tmp_path):
    store = ImageStore(4)

    chosen = plots.plot_misclassified(store, [0, 1, 0, 1], [0.1, 0.9, 0.4, 0.6], tmp_path / "none.png")

    assert chosen == []
    assert store.requests == []
    assert png_written(tmp_path / "none.png")
    assert leftover_temporary_files(tmp_path) == []


def test_misclassified_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_galaxies"):
        plots.plot_misclassified(ImageStore(2), [0, 1], [0.9, 0.1], tmp_path / "x.png", max_galaxies=0)
    with pytest.raises(ValueError, match="sources"):
        plots.plot_misclassified(ImageStore(2), [0, 1], [0.9, 0.1], tmp_path / "x.png", sources=["a.jpeg"])
    with pytest.raises(ValueError, match="load_images"):
        plots.plot_misclassified(lambda rows: np.zeros((1, 8, 8, 3), np.uint8), [0, 1], [0.9, 0.1], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    assert leftover_temporary_files(tmp_path) == []


# --------------------------------------------------------------------------- housekeeping


def test_many_reports_leave_no_open_figures(tmp_path):
    import matplotlib.pyplot as pyplot

    labels, p_elliptical = random_predictions(20)
    for run in range(2):
        report.write_evaluation_report(tmp_path / str(run), labels, p_elliptical, ImageStore(20), history=HISTORY)
    assert pyplot.get_fignums() == []


def test_show_on_screen_does_nothing_without_a_display(monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert not plots.display_available()
    plots.show_on_screen_if_possible([tmp_path / "missing.png"])  # returns without opening anything

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert plots.display_available()
    plots.show_on_screen_if_possible([tmp_path / "missing.png"])  # tests: Agg means do not show


def test_import_is_cheap():
    code = (
        "import sys, galaxy_classification.evaluation.report, galaxy_classification.evaluation.metrics; "
        "heavy = [name for name in ('tensorflow', 'matplotlib', 'matplotlib.pyplot', 'sklearn') if name in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(report.__file__).parents[2])
    assert result.stdout.strip() == "[]"
