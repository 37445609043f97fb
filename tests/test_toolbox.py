"""The project as a package: installable, quiet, and its shipped model on other Keras backends."""

import os
import subprocess
import sys
import sysconfig

import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT_ROOT

PRETRAINED = PROJECT_ROOT / "models" / "sdss-gz1.keras"
TF_STARTUP_LINES = ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "rebuild TensorFlow", "I0000", "W0000")


PACKAGE_FILES = ("pyproject.toml", "requirements.txt", "README.md", "sdss_query.py", "quick_cnn_trainer.py",
                 "galaxy_classification", "models")


@pytest.mark.slow
def test_pip_install_gives_both_commands(tmp_path):
    import shutil

    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in PACKAGE_FILES:
        copy = shutil.copytree if (PROJECT_ROOT / name).is_dir() else shutil.copy2
        copy(PROJECT_ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                   if (PROJECT_ROOT / name).is_dir() else {}))
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("galaxy_classification-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    bin_dir = tmp_path / "venv" / "bin"
    installed = subprocess.run([str(bin_dir / "pip"), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    # the dependencies come from this environment; the commands and the package from the fresh one
    environment = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    for command, words in (("sdss-query", "--n-galaxies"), ("quick-cnn-trainer", "--preset")):
        finished = subprocess.run([str(bin_dir / command), "--help"], capture_output=True, text=True,
                                  env=environment, cwd=tmp_path, timeout=120)
        assert finished.returncode == 0 and words in finished.stdout, finished.stderr
    assert (tmp_path / "venv" / "share" / "galaxy-classification" / "models" / "sdss-gz1.keras").is_file()
    probe = subprocess.run([str(bin_dir / "python"), "-c", "from galaxy_classification.model import files; print(files.pretrained_model_path())"],
                           capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120)
    assert str(tmp_path / "venv" / "share") in probe.stdout, probe.stderr


def test_predict_prints_no_tensorflow_start_up_lines(gz1_dir, tmp_path):
    table = pd.read_csv(gz1_dir / "labels.csv").head(3)
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    finished = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), "predict", "--out", str(tmp_path / "p.csv"),
         *[str(gz1_dir / name) for name in table["file"]]],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert not [line for line in finished.stderr.splitlines() if any(mark in line for mark in TF_STARTUP_LINES)], \
        finished.stderr
    verbose = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), "predict", "--verbose",
         "--out", str(tmp_path / "v.csv"), str(gz1_dir / table["file"][0])],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300)
    assert verbose.returncode == 0 and any(mark in verbose.stderr for mark in TF_STARTUP_LINES)


def test_training_prints_no_tensorflow_log_lines(tmp_path):
    """Neither the start-up lines nor those of the running tf.data pipeline
    ("Memory patch applied"): a training log is the run's own lines."""
    from trainer_helpers import write_data_directory

    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=30, size=32)
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    finished = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), "--data", str(directory), "--preset", "modern",
         "--epochs", "1", "--image-size", "32", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert not [line for line in finished.stderr.splitlines() if any(mark in line for mark in TF_STARTUP_LINES)], \
        finished.stderr


@pytest.mark.parametrize("level, shown", [(None, False), ("3", False), ("2", False), ("1", True), ("0", True)])
def test_start_up_lines_show_only_when_the_user_asks_for_tensorflows_messages(monkeypatch, level, shown):
    from galaxy_classification import quiet

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    if level is not None:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    assert quiet.wants_logs() is shown


def test_classify_reads_a_fits_catalogue(tmp_path):
    pytest.importorskip("astropy")
    from galaxy_classification import tables
    from galaxy_classification.inference import classify

    catalogue = pd.DataFrame({"ra": [150.1, 150.2], "dec": [2.0, 2.1], "objid": ["1237648720693755918", ""]})
    tables.write_table(catalogue, tmp_path / "c.fits")
    table = classify.read_catalogue(tmp_path / "c.fits")
    ra, dec, objids, _ = classify.checked_positions(table, tmp_path / "c.fits")
    np.testing.assert_allclose(ra, [150.1, 150.2]) and np.testing.assert_allclose(dec, [2.0, 2.1])
    assert objids[0] == "1237648720693755918"


def run_backend(backend, script, tmp_path):
    environment = {**os.environ, "KERAS_BACKEND": backend}
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                              cwd=PROJECT_ROOT, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def test_the_shipped_model_gives_the_same_probabilities_on_jax(gz1_dir, tmp_path):
    pytest.importorskip("jax")
    files = [str(gz1_dir / name) for name in pd.read_csv(gz1_dir / "labels.csv")["file"].head(8)]
    for backend in ("tensorflow", "jax"):
        run_backend(backend, (
            "import numpy, keras\n"
            "from galaxy_classification.model import files as model_files\n"
            "from galaxy_classification.data import image_stores\n"
            f"classifier = model_files.load_model({str(PRETRAINED)!r})\n"
            f"probabilities = model_files.predict_probabilities(classifier, image_stores.ImageFiles({files!r}), "
            "classifier.default_crop, progress=False)\n"
            f"raw = numpy.stack([image_stores.decode_image(path) for path in {files!r}])\n"
            "whole = numpy.asarray(classifier.keras_model.predict(raw, verbose=0))\n"
            "assert keras.backend.backend() == " + repr(backend) + "\n"
            f"numpy.save({str(tmp_path / backend)!r} + '.npy', numpy.concatenate([probabilities, whole]))\n"
        ), tmp_path)
    tensorflow, jax = np.load(tmp_path / "tensorflow.npy"), np.load(tmp_path / "jax.npy")
    np.testing.assert_allclose(jax, tensorflow, atol=1e-3)


def test_training_works_on_jax(tmp_path):
    pytest.importorskip("jax")
    from trainer_helpers import write_data_directory

    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=24, size=32)
    run_backend("jax", (
        "import sys, keras, quick_cnn_trainer\n"
        "assert keras.backend.backend() == 'jax'\n"
        f"sys.exit(quick_cnn_trainer.main(['--data', {str(directory)!r}, '--preset', 'modern', '--epochs', '1', "
        f"'--image-size', '16', '--batch-size', '8', '--out', {str(tmp_path / 'run')!r}, '--seed', '1']))\n"
    ), tmp_path)
    assert (tmp_path / "run" / "my-galaxy-model.keras").is_file() and (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("given, expected", [(None, "1"), ("0", "0")])
def test_onednn_kernels_are_asked_for_unless_the_user_chose(given, expected):
    environment = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = given
    shown = subprocess.run([sys.executable, "-c", "import os, galaxy_classification; "
                            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"], cwd=PROJECT_ROOT, env=environment,
                           capture_output=True, text=True, timeout=60, check=True)
    assert shown.stdout.strip() == expected
