"""quick_cnn_trainer.py as users run it: train, evaluate, predict, and every bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import quick_cnn_trainer
from galaxy_classification import errors
from galaxy_classification.data import storage
from galaxy_classification.inference import parts
from galaxy_classification.model import files as model_files

from trainer_helpers import write_data_directory, write_image_csv

SCRIPT = Path(quick_cnn_trainer.__file__)
REPORT_FILES = ("metrics.json", "training_curves.png", "confusion_matrix.png", "roc_curve.png", "misclassified.png")


def run_script(*arguments, cwd):
    environment = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], cwd=cwd, capture_output=True, text=True,
                          env=environment, timeout=600)


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    """Bare `python quick_cnn_trainer.py` in a folder holding data/: the seed's behaviour."""
    workdir = tmp_path_factory.mktemp("seed_run")
    _, images, labels = write_data_directory(workdir / "data", n_galaxies=40, size=32)
    result = run_script(cwd=workdir)
    return workdir, result, images, labels


def test_bare_run_trains_on_data_and_writes_the_seeds_outputs(seed_run):
    workdir, result, _, _ = seed_run
    assert result.returncode == 0, result.stderr
    for name in ("my-galaxy-model.h5", "my-galaxy-model.keras", *REPORT_FILES):
        assert (workdir / name).is_file(), name
    assert "true spiral" in result.stdout and "predicted elliptical" in result.stdout
    assert "precision" in result.stdout and "recall" in result.stdout
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["preset"] == "seed" and metrics["epochs_planned"] == 15 and metrics["batch_size"] == 5
    assert metrics["split"] == {"train": 22, "validation": 6, "test": 12}
    assert metrics["n_galaxies"] == 12 and np.asarray(metrics["confusion_matrix"]).sum() == 12
    assert len(metrics["class_names"]) == 2 and "roc_auc" in metrics


def test_help_is_fast_and_imports_no_tensorflow(tmp_path):
    result = run_script("--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--data", "--epochs", "--batch-size", "--image-size", "--preset", "--out", "--seed", "--crop"):
        assert flag in result.stdout
    assert "evaluate" in result.stdout and "predict" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, quick_cnn_trainer; print('tensorflow' in sys.modules, 'keras' in sys.modules)"],
        cwd=SCRIPT.parent, capture_output=True, text=True)
    assert probe.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("arguments, flag", [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "many"], "--batch-size"),
    (["--image-size", "4"], "--image-size"),
    (["--preset", "fancy"], "--preset"),
    (["--crop", "1.5"], "--crop"),
    (["--seed", "-1"], "--seed"),
    (["--precision", "half"], "--precision"),
    (["--colour"], "--colour"),
    (["evaluate", "--data", "data"], "--model"),
    (["predict"], "PATH"),
])
def test_bad_flags_fail_in_one_line_naming_the_flag(arguments, flag, capsys):
    with pytest.raises(SystemExit) as caught:
        quick_cnn_trainer.main(arguments)
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and flag in error


def _main_error(arguments, capsys):
    with pytest.raises(SystemExit) as caught:
        quick_cnn_trainer.main(arguments)
    assert caught.value.code == 2
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if not line.startswith("note: ")]  # notes said on the way
    assert len(lines) == 1 and "Traceback" not in error, error
    return lines[0]


def test_bad_data_fails_in_one_line_naming_the_file(tmp_path, capsys):
    error = _main_error(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")], capsys)
    assert "--data" in error and "missing" in error
    directory, _, labels = write_data_directory(tmp_path / "data", n_galaxies=10, size=16)
    np.save(directory / storage.LABELS_FILE, labels[:5])
    error = _main_error(["--data", str(directory), "--out", str(tmp_path / "out")], capsys)
    assert storage.LABELS_FILE in error and "5 labels" in error
    assert not (tmp_path / "out").exists()  # failed before anything was written
    error = _main_error(["predict", "--model", str(tmp_path / "none.keras"), str(tmp_path / "none.jpg")], capsys)
    assert "none.jpg" in error


def test_missing_model_is_a_one_line_error(seed_run, capsys):
    workdir, _, _, _ = seed_run
    error = _main_error(["evaluate", "--model", str(workdir / "absent.keras"), "--data", str(workdir / "data")],
                        capsys)
    assert "--model" in error and "absent.keras" in error
    if not model_files.pretrained_model_path().is_file():
        error = _main_error(["predict", str(workdir / "data")], capsys)
        assert "--model" in error and "sdss-gz1.keras" in error


def test_modern_preset_on_a_csv_skips_unlabelled_rows_and_caches(tmp_path, capsys):
    csv_path, _, _ = write_image_csv(tmp_path / "gz", n_galaxies=34, size=48, unlabelled=4, field_of_view=10.152)
    out = tmp_path / "out"
    assert quick_cnn_trainer.main(["--data", str(csv_path), "--preset", "modern", "--epochs", "2",
                                   "--image-size", "32", "--batch-size", "16", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "30 galaxies" in printed and "4 rows without a label skipped" in printed
    for name in ("my-galaxy-model.h5", "my-galaxy-model.keras", *REPORT_FILES):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["preset"], metrics["image_size"]) == ("modern", 32)
    assert metrics["crop_fraction"] == pytest.approx(3.55 / 10.152, abs=1e-5)  # from the recorded field
    assert metrics["epochs_run"] <= 2 and sum(metrics["split"].values()) == 30
    assert len(list((out / "cache").glob("*.npy"))) == 1


@pytest.mark.parametrize("model_name", ["my-galaxy-model.keras", "my-galaxy-model.h5"])
def test_predict_every_path_form_and_evaluate_agree(seed_run, tmp_path, model_name, capsys):
    workdir, _, images, labels = seed_run
    model = str(workdir / model_name)
    gallery, _, _ = write_image_csv(tmp_path / "gallery", n_galaxies=6, size=40)
    out = tmp_path / "predictions.csv"
    paths = [gallery.parent / "images" / "001.jpeg", gallery.parent / "images", gallery,
             workdir / "data" / storage.IMAGES_FILE]
    assert quick_cnn_trainer.main(["predict", "--model", model, "--out", str(out), *map(str, paths)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["source", "p_spiral", "p_elliptical", "predicted", "crop", "objid", "explore_url"]
    assert len(table) == 1 + 6 + 6 + 40
    assert table.objid[-40:].notna().all() and table.explore_url[-40:].str.contains("explore").all()
    np.testing.assert_allclose(table.p_spiral + table.p_elliptical, 1.0, atol=1e-5)
    assert set(table.predicted) <= {"spiral", "elliptical"}
    assert (table.predicted == np.where(table.p_elliptical >= 0.5, "elliptical", "spiral")).all()
    same_image = table[table.source.astype(str).str.endswith("001.jpeg")]
    assert len(same_image) == 3 and np.ptp(same_image.p_elliptical) < 1e-5  # file, folder and CSV agree

    report_dir = tmp_path / "evaluation"
    assert quick_cnn_trainer.main(["evaluate", "--model", model, "--data", str(workdir / "data"),
                                   "--out", str(report_dir)]) == 0
    assert "true spiral" in capsys.readouterr().out
    for name in REPORT_FILES[:1] + REPORT_FILES[2:]:
        assert (report_dir / name).is_file(), name
    metrics = json.loads((report_dir / "metrics.json").read_text())
    p_elliptical = table.p_elliptical.to_numpy()[-40:]  # the .npy rows, in order
    from sklearn.metrics import confusion_matrix, roc_auc_score

    predicted = (p_elliptical >= 0.5).astype(int)
    assert metrics["confusion_matrix"] == confusion_matrix(labels, predicted, labels=[0, 1]).tolist()
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, p_elliptical), abs=1e-4)


def test_predict_over_a_folder_survives_unreadable_files_and_names_them(tmp_path, capsys):
    """One truncated download or saved error page among thousands of cutouts
    must not cost the run: the readable ones are classified, the others get
    status 'failed' with the reason, and the table says which."""
    _, images, _ = write_image_csv(tmp_path, n_galaxies=4, size=96)
    folder = tmp_path / "images"
    (folder / "002.jpeg").write_bytes(b"<html>server busy</html>")
    (folder / "003.jpeg").write_bytes((folder / "001.jpeg").read_bytes()[:300])  # truncated
    Image.fromarray(images[1][:8, :8]).save(folder / "thumbnail.jpeg")
    Image.fromarray(images[2]).convert("L").convert("RGB").save(folder / "grey.jpeg")  # grey pixels in RGB
    out = tmp_path / "predictions.csv"
    shipped = Path(quick_cnn_trainer.__file__).parent / "models" / "sdss-gz1.keras"
    assert quick_cnn_trainer.main(["predict", "--model", str(shipped), "--out", str(out), str(folder)]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["source", "p_spiral", "p_elliptical", "predicted", "crop", "status", "reason"]
    by_name = table.set_index(table.source.map(lambda source: Path(source).name))
    assert list(by_name.status) == ["ok", "ok", "failed", "failed", "ok", "ok"]
    assert "cannot identify image file" in by_name.reason["002.jpeg"] and "truncated" in by_name.reason["003.jpeg"].lower()
    assert (by_name.loc[["002.jpeg", "003.jpeg"], ["p_spiral", "p_elliptical", "predicted"]] == "").all().all()
    assert set(by_name.predicted[by_name.status == "ok"]) <= {"spiral", "elliptical"}
    output = capsys.readouterr()
    assert "2 not classified" in output.out and "002.jpeg" in output.err
    assert "1 image(s) too small" in output.err and "thumbnail.jpeg: 8x8 px" in output.err
    assert "1 image(s) without colour (grey), e.g. grey.jpeg" in output.err

    for k in range(3):  # in parts, some without a failure: the merged table is the whole one
        quick_cnn_trainer.predict([folder], model=shipped, out=tmp_path / "p.csv", progress=False, part=(k, 3))
    merged = parts.merge(tmp_path / "p.csv")
    assert list(merged.status) == list(table.status) and list(merged.reason) == list(table.reason)
    both = quick_cnn_trainer.predict([folder / "000.png", folder], model=shipped, out=out, progress=False)
    assert list(both.status) == ["ok", *table.status]  # an input without failures reads 'ok' beside one with

    listed = tmp_path / "listed.csv"  # a list naming a file that is gone: that row fails, the others are classified
    pd.DataFrame({"file": ["images/000.png", "images/gone.jpeg"]}).to_csv(listed, index=False)
    from_list = quick_cnn_trainer.predict([listed], model=shipped, out=out, progress=False)
    assert list(from_list.status) == ["ok", "failed"] and from_list.reason[1] == "image file missing"
    pd.DataFrame({"file": ["images/gone.jpeg"]}).to_csv(listed, index=False)
    with pytest.raises(errors.DataFileError, match="image file missing"):  # all gone: a wrong folder, say so
        quick_cnn_trainer.predict([listed], model=shipped, out=out, progress=False)


def test_sixteen_bit_images_are_scaled_not_clipped_and_float_ones_refused(tmp_path):
    from galaxy_classification.data import image_stores

    grey = np.linspace(0, 255, 32 * 32).reshape(32, 32).astype(np.uint8)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit: Pillow would clip to white
    decoded = image_stores.decode_image(tmp_path / "deep.png")
    assert decoded.shape == (32, 32, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded[..., 1], grey)
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "science.tif")
    with pytest.raises(errors.DataFileError, match=r"science.tif: F pixels .* 8-bit RGB JPEG or PNG"):
        image_stores.decode_image(tmp_path / "science.tif")


def test_keras_and_h5_files_hold_the_same_model(seed_run, tmp_path):
    workdir, _, _, _ = seed_run
    tables = []
    for name in ("my-galaxy-model.keras", "my-galaxy-model.h5"):
        out = tmp_path / f"{name}.csv"
        quick_cnn_trainer.main(["predict", "--model", str(workdir / name), "--out", str(out), str(workdir / "data")])
        tables.append(pd.read_csv(out))
    np.testing.assert_allclose(tables[0].p_elliptical, tables[1].p_elliptical, atol=1e-6)


def test_same_seed_gives_the_same_model(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=40, size=32)
    predictions = []
    for run in ("first", "second"):
        out = tmp_path / run
        quick_cnn_trainer.main(["--data", str(directory), "--preset", "modern", "--epochs", "2", "--image-size", "32",
                                "--batch-size", "8", "--seed", "11", "--out", str(out)])
        quick_cnn_trainer.main(["predict", "--model", str(out / "my-galaxy-model.keras"),
                                "--out", str(out / "predictions.csv"), str(directory)])
        predictions.append(pd.read_csv(out / "predictions.csv").p_elliptical.to_numpy())
    np.testing.assert_array_equal(predictions[0], predictions[1])


def test_real_gz1_frames_train_and_predict_without_flags(gz1_dir, tmp_path):
    table = pd.read_csv(gz1_dir / "labels.csv", dtype=str, keep_default_na=False)
    chosen = pd.concat([table[table.label == "0"].head(10), table[table.label == "1"].head(10),
                        table[table.label == ""].head(2)])
    chosen = chosen.assign(file=[str(gz1_dir / name) for name in chosen.file])  # absolute: shared data stays put
    csv_path = tmp_path / "few.csv"
    chosen.to_csv(csv_path, index=False)
    out = tmp_path / "out"
    assert quick_cnn_trainer.main(["--data", str(csv_path), "--preset", "modern", "--epochs", "1",
                                   "--image-size", "32", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["split"]["test"] == 6
    raw_jpegs = [str(gz1_dir / name) for name in table.file.head(3)]
    assert quick_cnn_trainer.main(["predict", "--model", str(out / "my-galaxy-model.h5"),
                                   "--out", str(tmp_path / "p.csv"), *raw_jpegs]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3
