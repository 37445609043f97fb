"""Hostile and unlucky inputs: each gets one line naming it and an exit code that tells the truth,
no traceback, and nothing already on disk is touched; an interrupted training leaves a whole folder."""

import hashlib
import io
import os
import socket
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import quick_cnn_trainer
import sdss_query
from galaxy_classification.data import storage
from galaxy_classification.model import files as model_files

from conftest import PROJECT_ROOT
from fake_sdss import FakeSDSS, make_sky, unused_address
from test_sdss_client import point_client_at
from trainer_helpers import write_data_directory, write_image_csv

PRETRAINED = PROJECT_ROOT / "models" / "sdss-gz1.keras"


def one_line_error(capsys, main, arguments, code=2):
    """Run a command line in-process; check its exit code and that it says what went wrong in one line
    (beside progress bars, notes and the listing of failed rows); return that line."""
    try:
        status = main(arguments)
    except SystemExit as exit_:
        status = exit_.code
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.startswith("error:") or ": error:" in line]
    assert status == code, error
    assert len(lines) == 1 and "Traceback" not in error, error
    return lines[0]


def bomb_jpeg(path, side=30000):
    """A small JPEG whose header claims ``side`` x ``side`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (30, 40, 50)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    start = data.find(b"\xff\xc0")
    data[start + 5:start + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))
    return path


def folder_of_images(directory, n=4):
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(n):
        colour = (40 + 30 * index, 90, 160 - 20 * index)
        Image.new("RGB", (128, 128), colour).save(directory / f"g{index}.jpg")
    return directory


# --------------------------------------------------------------------------- exit codes


def test_predict_exits_1_when_no_input_could_be_classified_and_0_when_some_could(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for index in range(3):
        (broken / f"b{index}.jpg").write_text("<html>an error page saved as a picture</html>")
    line = one_line_error(capsys, quick_cnn_trainer.main, ["predict", str(broken), "--out", str(tmp_path / "a.csv")],
                          code=1)
    assert "none of the 3 galaxies could be classified" in line
    assert pd.read_csv(tmp_path / "a.csv")["status"].eq("failed").all()  # the reasons are kept

    mixed = folder_of_images(tmp_path / "mixed", n=2)
    (mixed / "bad.jpg").write_text("not a picture")
    assert quick_cnn_trainer.main(["predict", str(mixed), "--out", str(tmp_path / "b.csv")]) == 0
    line = one_line_error(capsys, quick_cnn_trainer.main,
                          ["predict", str(mixed), "--out", str(tmp_path / "c.csv"), "--strict"], code=1)
    assert "1 of 3 galaxies could not be classified (--strict)" in line


def test_classify_exits_1_when_every_row_failed(tmp_path, monkeypatch, capsys):
    fake = FakeSDSS(make_sky(n_spiral=0, n_elliptical=0, n_uncertain=0, n_outside=3)).start()
    try:
        point_client_at(fake, monkeypatch)
        rows = [f"{g['objid']},{g['ra']},{g['dec']},{g['petror90_r']}" for g in fake.galaxies]
        (tmp_path / "c.csv").write_text("objid,ra,dec,petroR90_r\n" + "\n".join(rows) + "\n")
        line = one_line_error(capsys, quick_cnn_trainer.main, [
            "classify", str(tmp_path / "c.csv"), "--no-login", "--out", str(tmp_path / "out.csv")], code=1)
    finally:
        fake.stop()
    assert "none of the 3 galaxies" in line
    assert set(pd.read_csv(tmp_path / "out.csv")["status"]) == {"failed"}


# --------------------------------------------------------------------------- no traceback from any input


def test_an_image_claiming_a_billion_pixels_is_a_failed_row_not_a_lost_batch(tmp_path):
    folder = folder_of_images(tmp_path / "in", n=3)
    bomb_jpeg(folder / "bomb.jpg")
    table = quick_cnn_trainer.predict([folder], out=tmp_path / "p.csv", progress=False)
    by_source = table.set_index(table["source"].map(lambda source: os.path.basename(source)))
    assert by_source.loc["bomb.jpg", "status"] == "failed" and "pixels" in by_source.loc["bomb.jpg", "reason"]
    assert (by_source.drop("bomb.jpg")["status"] == "ok").all()


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "sdss_query"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(command, tmp_path, capsys):
    data, _, _ = write_data_directory(tmp_path / "data", n_galaxies=12, size=16)
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")
    out = blocker / "run"
    arguments = {
        "train": (quick_cnn_trainer.main, ["--data", str(data), "--out", str(out)]),
        "evaluate": (quick_cnn_trainer.main, ["evaluate", "--model", str(PRETRAINED), "--data", str(data),
                                              "--out", str(out)]),
        "predict": (quick_cnn_trainer.main, ["predict", str(data), "--out", str(out / "p.csv")]),
        "sdss_query": (sdss_query.main, ["--synthetic", "--n-galaxies", "4", "--out", str(out)]),
    }[command]
    line = one_line_error(capsys, *arguments)
    assert str(blocker) in line and "is a file, not a directory" in line
    assert blocker.read_text() == "a file where a folder should be"


def small_network(channels=3, classes=2, activation="softmax"):
    import keras

    inputs = keras.Input((16, 16, channels))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, activation=activation)(pooled))


@pytest.mark.parametrize("network, words", [
    (lambda: small_network(classes=3), "output of shape (None, 3)"),
    (lambda: small_network(channels=1), "input of shape (None, 16, 16, 1)"),
    (lambda: small_network(classes=1, activation="sigmoid"), "a single sigmoid"),
])
def test_a_model_that_does_not_fit_is_refused_when_loaded(network, words, tmp_path, capsys):
    path = tmp_path / "odd.h5"
    network().save(path)
    folder = folder_of_images(tmp_path / "in", n=1)
    line = one_line_error(capsys, quick_cnn_trainer.main, ["predict", str(folder), "--model", str(path),
                                                           "--out", str(tmp_path / "p.csv")])
    assert words in line and not (tmp_path / "p.csv").exists()


def test_a_truncated_model_file_is_named_as_such(tmp_path, capsys):
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(PRETRAINED.read_bytes()[:200_000])
    folder = folder_of_images(tmp_path / "in", n=1)
    line = one_line_error(capsys, quick_cnn_trainer.main, ["predict", str(folder), "--model", str(truncated),
                                                           "--out", str(tmp_path / "p.csv")])
    assert "not a complete .keras file" in line and "truncated" in line


def test_an_absurd_sample_size_gets_one_line(tmp_path, capsys):
    line = one_line_error(capsys, sdss_query.main, ["--synthetic", "--n-galaxies", "9" * 22, "--out",
                                                    str(tmp_path / "d")])
    assert "n_galaxies must be at most 500,000" in line and not (tmp_path / "d").exists()


@pytest.mark.parametrize("backend, words", [("tensorflw", "not a Keras backend"), ("torch", "is not installed")])
def test_the_keras_backend_is_checked_at_start_up(backend, words, tmp_path):
    pytest.importorskip("tensorflow")
    if backend == "torch" and __import__("importlib").util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here")
    folder = folder_of_images(tmp_path / "in", n=1)
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), "predict", str(folder),
                             "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": backend}, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and words in result.stderr, result.stderr


@pytest.mark.parametrize("objid", ["²³", "１２３４", "1" * 21, str(2**64)])
def test_an_objid_must_be_ascii_digits_below_two_to_the_64(objid, tmp_path, monkeypatch, capsys):
    fake = FakeSDSS().start()
    try:
        point_client_at(fake, monkeypatch)
        (tmp_path / "c.csv").write_text(f"objid,ra,dec\n{objid},150.0,2.0\n", encoding="utf-8")
        line = one_line_error(capsys, quick_cnn_trainer.main, ["classify", str(tmp_path / "c.csv"), "--no-login",
                                                               "--out", str(tmp_path / "o.csv")])
        assert "not an SDSS objid" in line and fake.count() == 0
    finally:
        fake.stop()


def test_a_release_without_the_web_service_is_refused_before_any_request(tmp_path, monkeypatch, capsys):
    fake = FakeSDSS().start()
    try:
        point_client_at(fake, monkeypatch)
        line = one_line_error(capsys, sdss_query.main, ["--data-release", "DR99", "--no-login", "--out",
                                                        str(tmp_path / "d")])
        assert "DR12 to DR19" in line and fake.count() == 0 and not (tmp_path / "d").exists()
    finally:
        fake.stop()


def test_offline_is_said_in_the_first_words_with_the_way_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SDSS_SKYSERVER_URL", unused_address())
    monkeypatch.setenv("SDSS_BACKOFF_SECONDS", "0.2")
    line = one_line_error(capsys, sdss_query.main, ["--no-login", "--out", str(tmp_path / "d")], code=1)
    assert line.startswith("error: cannot reach SDSS") and "--synthetic" in line


# --------------------------------------------------------------------------- no silent wrongs


def test_a_training_set_of_one_class_is_refused_with_the_counts(tmp_path, capsys):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=10, size=16)
    table = pd.read_csv(csv_path)
    table.assign(label=1).to_csv(csv_path, index=False)
    line = one_line_error(capsys, quick_cnn_trainer.main, ["--data", str(csv_path), "--out", str(tmp_path / "o")])
    assert "0 spiral, 10 elliptical" in line and "both classes" in line and not (tmp_path / "o").exists()


def test_the_same_image_under_two_labels_is_refused(tmp_path, capsys):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=10, size=16)
    table = pd.read_csv(csv_path)
    flipped = table.head(2).assign(label=1 - table["label"].head(2))
    pd.concat([table, flipped]).to_csv(csv_path, index=False)
    line = one_line_error(capsys, quick_cnn_trainer.main, ["--data", str(csv_path), "--out", str(tmp_path / "o")])
    assert "2 image(s) listed under both labels" in line


def test_training_notes_the_frames_the_model_does_badly_on_once(tmp_path):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=12, size=32)
    table = pd.read_csv(csv_path)
    for index, file in enumerate(table["file"][:3]):
        Image.open(tmp_path / file).convert("L").convert("RGB").save(tmp_path / file)
    Image.new("RGB", (32, 20), (0, 0, 0)).save(tmp_path / table["file"][3])
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), "--data", str(csv_path),
                             "--preset", "modern", "--epochs", "1", "--image-size", "16", "--out",
                             str(tmp_path / "o")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: training data")]
    assert len(notes) == 1, result.stderr
    assert "frames without colour (grey)" in notes[0] and "blank" in notes[0] and "not square" in notes[0]


def test_an_ensemble_refuses_a_model_averaged_with_itself_and_names_members_by_path(tmp_path, capsys):
    copy = tmp_path / "copy" / PRETRAINED.name
    copy.parent.mkdir()
    copy.write_bytes(PRETRAINED.read_bytes())
    line = one_line_error(capsys, quick_cnn_trainer.main, ["ensemble", str(PRETRAINED), str(copy), "--out",
                                                           str(tmp_path / "e.keras")])
    assert str(copy) in line and str(PRETRAINED) in line and "averaged with itself" in line


def test_merge_refuses_a_part_that_lost_its_last_row(tmp_path, capsys):
    folder = folder_of_images(tmp_path / "in", n=5)
    for k in range(2):
        quick_cnn_trainer.predict([folder], out=tmp_path / "p.csv", progress=False, part=(k, 2))
    last = tmp_path / "p.part-1-of-2.csv"
    last.write_text("".join(last.read_text().splitlines(keepends=True)[:-1]))
    line = one_line_error(capsys, quick_cnn_trainer.main, ["merge", str(tmp_path / "p.csv")])
    assert "p.part-1-of-2.csv: 1 rows, but part 1 of 2 of a 5-row run holds 2" in line
    assert not (tmp_path / "p.csv").exists()


# --------------------------------------------------------------------------- interrupted saves


INTERRUPTING_TRAINER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal: a background job starts it ignored
sys.path.insert(0, {root!r})
from galaxy_classification.model import files
save = files.save_model

def save_then_stop(*arguments, **options):
    saved = save(*arguments, **options)
    os.kill(os.getpid(), signal.{signal})
    return saved

files.save_model = save_then_stop
import quick_cnn_trainer
sys.exit(quick_cnn_trainer.main(sys.argv[1:]))
"""


def folder_state(directory):
    return {path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file() and "cache" not in path.parts}


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_training_interrupted_while_saving_leaves_the_whole_old_set(signal_name, code, tmp_path):
    data, _, _ = write_data_directory(tmp_path / "data", n_galaxies=24, size=16)
    arguments = ["--data", str(data), "--preset", "modern", "--epochs", "1", "--image-size", "16",
                 "--out", str(tmp_path / "run"), "--seed", "0"]
    trainer = [sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), *arguments]
    first = subprocess.run(trainer, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = folder_state(tmp_path / "run")
    assert {"my-galaxy-model.keras", "my-galaxy-model.h5", "metrics.json"} <= set(before)

    script = tmp_path / "interrupting.py"
    script.write_text(INTERRUPTING_TRAINER.format(root=str(PROJECT_ROOT), signal=signal_name))
    second = subprocess.run([sys.executable, str(script), *arguments[:-2], "--seed", "1"], capture_output=True,
                            text=True, timeout=600, cwd=tmp_path)
    assert second.returncode == code, second.stderr[-2000:]
    assert "Traceback" not in second.stderr and second.stderr.rstrip().endswith("interrupted")
    assert folder_state(tmp_path / "run") == before  # the old set, whole; no staging, no temporary, no lock
    leftovers = [path.name for path in (tmp_path / "run").iterdir() if path.name.startswith(".")]
    assert leftovers == []


def test_a_second_run_into_a_held_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    data, _, _ = write_data_directory(tmp_path / "data", n_galaxies=24, size=16)
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / storage.LOCK_FILE).write_text(f"{holder.pid}@{socket.gethostname()}\n")
        line = one_line_error(capsys, quick_cnn_trainer.main, ["--data", str(data), "--out", str(out)])
        assert f"another run (process {holder.pid}@" in line
    finally:
        holder.kill()
        holder.wait()
    with pytest.warns(Warning, match="which has ended; taking it over"):
        quick_cnn_trainer.train(str(data), "modern", out, epochs=1, image_size=16, progress=False)
    assert not (out / storage.LOCK_FILE).exists() and (out / "my-galaxy-model.keras").is_file()


def test_a_shipped_model_and_its_h5_stay_consistent_after_a_good_run(tmp_path):
    data, _, _ = write_data_directory(tmp_path / "data", n_galaxies=24, size=16)
    quick_cnn_trainer.train(str(data), "modern", tmp_path / "run", epochs=1, image_size=16, progress=False, seed=0)
    keras_model = model_files.load_model(tmp_path / "run" / "my-galaxy-model.keras")
    h5_model = model_files.load_model(tmp_path / "run" / "my-galaxy-model.h5")
    images = np.stack([np.full((16, 16, 3), value, np.uint8) for value in (30, 120)])
    from galaxy_classification.data.image_stores import NpyImages

    np.save(tmp_path / "x.npy", images)
    first = model_files.predict_probabilities(keras_model, NpyImages(tmp_path / "x.npy"), 1.0, progress=False)
    second = model_files.predict_probabilities(h5_model, NpyImages(tmp_path / "x.npy"), 1.0, progress=False)
    np.testing.assert_allclose(first, second, atol=1e-5)
