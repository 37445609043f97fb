"""Probabilities a scientist can trust: calibration, coverage, agreement, the audit, ensembles."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import quick_cnn_trainer
from galaxy_classification.evaluation import metrics, report
from galaxy_classification.inference import results
from galaxy_classification.model import architectures
from galaxy_classification.model import files as model_files
from galaxy_classification.training import calibration

from trainer_helpers import write_data_directory


def overconfident(n=400, seed=0):
    """Labels and the (n, 2) probabilities of a model that is right 80% of the time but says 99%."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    right = rng.random(n) < 0.8
    predicted = np.where(right, labels, 1 - labels)
    p_elliptical = np.where(predicted == 1, 0.99, 0.01)
    return labels, np.stack([1 - p_elliptical, p_elliptical], axis=1)


def test_temperature_scaling_lowers_the_log_loss_and_never_changes_the_winner():
    labels, probabilities = overconfident()
    temperature = calibration.fit_temperature(probabilities, labels)
    calibrated = calibration.apply_temperature(probabilities, temperature)
    before = metrics.calibration_report(labels, probabilities[:, 1])
    after = metrics.calibration_report(labels, calibrated[:, 1])
    assert temperature > 1  # an over-confident model is softened
    assert after["log_loss"] < before["log_loss"] and after["expected_calibration_error"] < 0.05
    np.testing.assert_array_equal(calibrated.argmax(axis=1), probabilities.argmax(axis=1))
    assert np.mean(calibrated.max(axis=1)) == pytest.approx(0.8, abs=0.03)  # says what it knows


def test_ece_and_brier_match_hand_computed_cases():
    # bins of the predicted class's probability: 0.9 and 0.9 (one right) -> |0.5 - 0.9| x 2/4,
    # 0.6 and 0.7 in two bins, both right -> |1 - 0.6| x 1/4 + |1 - 0.7| x 1/4
    labels = np.array([1, 0, 1, 0])
    p_elliptical = np.array([0.9, 0.9, 0.6, 0.3])
    assert metrics.expected_calibration_error(labels, p_elliptical) == pytest.approx(0.2 + 0.1 + 0.075)
    report = metrics.calibration_report(labels, p_elliptical)
    assert report["brier_score"] == pytest.approx((0.01 + 0.81 + 0.16 + 0.09) / 4)
    perfect = metrics.calibration_report(np.array([0, 1]), np.array([0.0, 1.0]))
    assert perfect["expected_calibration_error"] == 0 and perfect["brier_score"] == 0


def test_accuracy_against_coverage_keeps_the_most_confident_first():
    labels = np.array([1, 1, 0, 0, 1])
    p_elliptical = np.array([0.99, 0.2, 0.4, 0.01, 0.55])  # confidences .99 .8 .6 .99 .55
    coverage = metrics.accuracy_at_coverage(labels, p_elliptical, (0.4, 0.6, 1.0))
    assert coverage["0.4"]["accuracy"] == 1.0 and coverage["0.4"]["galaxies"] == 2
    assert coverage["0.6"]["accuracy"] == pytest.approx(2 / 3)  # the 0.8 one is wrong
    assert coverage["1"]["accuracy"] == pytest.approx(0.8)


def test_agreement_bins_with_and_without_vote_fractions():
    labels = np.array([0, 1, 1, 0])
    p_elliptical = np.array([0.1, 0.9, 0.2, 0.6])
    catalogue = pd.DataFrame({"p_el_debiased": [0.1, 0.97, 0.7, 0.4], "p_cs_debiased": [0.9, 0.03, 0.3, 0.55]})
    agreement = metrics.volunteer_agreement(catalogue)
    np.testing.assert_allclose(agreement, [0.9, 0.97, 0.7, 0.55])
    report = metrics.agreement_report(labels, p_elliptical, agreement)
    assert report["all"] == {"accuracy": 0.5, "galaxies": 4}
    assert report[">=0.6"] == {"accuracy": pytest.approx(2 / 3), "galaxies": 3}
    assert report[">=0.95"] == {"accuracy": 1.0, "galaxies": 1}
    assert metrics.volunteer_agreement(pd.DataFrame({"label": [0]})) is None
    assert metrics.agreement_report(labels, p_elliptical, None) is None


def test_min_confidence_is_a_strict_threshold():
    probabilities = np.array([[0.3, 0.7], [0.71, 0.29], [0.5, 0.5]])
    assert list(results.predicted_classes(probabilities, 0.7)) == ["elliptical", "spiral", "uncertain"]
    assert list(results.predicted_classes(probabilities, 0.71)) == ["uncertain", "spiral", "uncertain"]


def test_the_audit_lists_confident_disagreements_first_with_sky_links():
    labels = np.array([0, 1, 1, 0, 1])
    p_elliptical = np.array([0.95, 0.9, 0.3, 0.6, 0.04])
    table = report.suspect_labels(labels, p_elliptical, [f"s{i}" for i in range(5)],
                                   [str(1237648720693755918 + i) for i in range(5)], "DR15")
    assert list(table.columns) == ["rank", "source", "objid", "label", "predicted", "p_elliptical", "confidence",
                                   "label_quality", "explore_url"]
    # too few galaxies for cleanlab: the confident disagreements, the label's probability lowest first
    assert list(table["source"]) == ["s4", "s0", "s2", "s3"]
    assert list(table["rank"]) == [1, 2, 3, 4] and list(table["label"]) == ["elliptical", "spiral", "elliptical",
                                                                            "spiral"]
    assert table["explore_url"][0].endswith("id=1237648720693755922")


def test_cleanlab_finds_the_flipped_labels_lowest_label_quality_first():
    rng = np.random.default_rng(0)
    truth = np.array([0, 1] * 30)
    p_elliptical = np.clip(np.where(truth == 1, 0.85, 0.15) + rng.normal(0, 0.05, len(truth)), 0.01, 0.99)
    labels = truth.copy()
    flipped = [3, 10, 41]
    labels[flipped] = 1 - labels[flipped]
    p_elliptical[41] = 0.995  # the most confident of the three
    table = report.suspect_labels(labels, p_elliptical, [f"s{i}" for i in range(len(labels))])
    assert set(table["source"]) == {f"s{i}" for i in flipped} and table["source"][0] == "s41"
    assert list(table["label_quality"]) == sorted(table["label_quality"])


def test_folding_the_temperature_into_the_network_calibrates_its_output():
    network = architectures.build_modern_cnn(16, (4, 8), (1, 1))
    batch = np.random.default_rng(0).random((6, 16, 16, 3), dtype=np.float32)
    raw = np.asarray(network.predict_on_batch(batch))
    architectures.fold_temperature(network, 2.5)
    np.testing.assert_allclose(network.predict_on_batch(batch), calibration.apply_temperature(raw, 2.5), atol=1e-5)


def test_an_ensemble_is_one_plain_keras_model_equal_to_the_mean_of_its_members(tmp_path):
    members = [architectures.build_modern_cnn(16, (4, 8), (1, 1), name=f"member_{i}") for i in range(3)]
    ensemble = architectures.average_of(members)
    h5, _ = model_files.save_classifier_files(ensemble, tmp_path / "ensemble", 1.0, 16, None)
    batch = np.random.default_rng(1).random((5, 16, 16, 3), dtype=np.float32)
    np.save(tmp_path / "batch.npy", batch)
    expected = np.mean([member.predict_on_batch(batch) for member in members], axis=0)
    script = (f"import numpy, keras\nm = keras.models.load_model({str(h5)!r})\n"
              f"numpy.save({str(tmp_path / 'out.npy')!r}, m.predict(numpy.load({str(tmp_path / 'batch.npy')!r}), verbose=0))")
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def test_models_trained_apart_combine_into_one_model_giving_their_mean(tmp_path, capsys):
    from galaxy_classification.data.field_of_view import GALAXY_ZOO_1_FIELD

    paths = []
    for seed in (0, 1):
        network = architectures.build_modern_cnn(16, (4, 8), (1, 1))  # the trainer's name for both: they must not clash
        network.set_weights([np.random.default_rng(seed).normal(0, 0.3, w.shape) for w in network.get_weights()])
        _, keras_path = model_files.save_classifier_files(network, tmp_path / f"seed{seed}", 0.35, 16, GALAXY_ZOO_1_FIELD)
        paths.append(keras_path)
    assert quick_cnn_trainer.main(["ensemble", *map(str, paths), "--out", str(tmp_path / "both.keras")]) == 0
    combined = model_files.load_model(tmp_path / "both.keras")
    assert (combined.view_petro_radii, combined.trained_field) == (round(10.152 * 0.35, 6), 10.152)
    frames = np.random.default_rng(2).integers(0, 256, (4, 60, 60, 3), dtype=np.uint8)
    expected = np.mean([model_files.load_model(path).keras_model.predict(frames, verbose=0) for path in paths], axis=0)
    np.testing.assert_allclose(combined.keras_model.predict(frames, verbose=0), expected, atol=1e-5)


def test_models_that_see_the_sky_differently_are_not_combined(tmp_path, capsys):
    paths = []
    for size in (16, 24):
        network = architectures.build_modern_cnn(size, (4, 8), (1, 1))
        paths.append(model_files.save_classifier_files(network, tmp_path / f"size{size}", 1.0, size, None)[1])
    with pytest.raises(SystemExit):
        quick_cnn_trainer.main(["ensemble", *map(str, paths), "--out", str(tmp_path / "both.keras")])
    error = capsys.readouterr().err
    assert "MODEL" in error and "image_size" in error
    assert not (tmp_path / "both.keras").exists()


def test_training_an_ensemble_writes_calibration_and_the_trust_pictures(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=1500, size=16)
    out = tmp_path / "run"
    assert quick_cnn_trainer.main(["--data", str(directory), "--preset", "modern", "--epochs", "1",
                                   "--image-size", "16", "--batch-size", "32", "--ensemble", "2",
                                   "--out", str(out), "--seed", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ensemble"] == 2 and len(metrics["epochs_run"]) == 2
    assert metrics["split"]["validation"] >= 200 and metrics["temperature_scaling"]["fitted_on"] == "validation split"
    assert metrics["temperature_scaling"]["temperature"] > 0
    for key in ("expected_calibration_error", "brier_score", "log_loss", "accuracy_at_coverage"):
        assert key in metrics["calibration"]
    assert set(metrics["calibration"]["accuracy_at_coverage"]) == {"0.5", "0.8", "0.9", "1"}
    for name in ("reliability_diagram.png", "accuracy_vs_coverage.png"):
        assert (out / name).is_file()
    classifier = model_files.load_model(out / "my-galaxy-model.keras")
    assert classifier.temperature == pytest.approx(metrics["temperature_scaling"]["temperature"], rel=1e-4)
    evaluation = tmp_path / "evaluation"
    assert quick_cnn_trainer.main(["evaluate", "--model", str(out / "my-galaxy-model.keras"), "--data",
                                   str(directory), "--out", str(evaluation)]) == 0
    suspects = pd.read_csv(evaluation / "suspect_labels.csv")
    assert list(suspects.columns)[:4] == ["rank", "source", "objid", "label"]


def test_too_few_validation_galaxies_leave_the_probabilities_as_trained(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=40, size=16)
    assert quick_cnn_trainer.main(["--data", str(directory), "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())["temperature_scaling"]
    assert record["temperature"] == 1.0 and record["fitted_on"] is None


def test_min_agreement_needs_vote_fractions(tmp_path, capsys):
    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=12, size=16)
    with pytest.raises(SystemExit):
        quick_cnn_trainer.main(["--data", str(directory), "--min-agreement", "0.8", "--out", str(tmp_path / "o")])
    assert "vote fractions" in capsys.readouterr().err
