"""The two scripts are faces over the package: the seed's names import from them, their --help
works, library calls raise the project's error types and notes are warnings a caller can filter."""

import subprocess
import sys
import warnings

import pytest

import quick_cnn_trainer
import sdss_query
from galaxy_classification import errors

from conftest import PROJECT_ROOT
from trainer_helpers import write_data_directory


def test_the_seeds_names_import_from_the_trainer():
    from quick_cnn_trainer import classify, clean_data, create_cnn, evaluate, get_data, main, predict, train

    assert all(callable(name) for name in (classify, clean_data, create_cnn, evaluate, get_data, main, predict, train))
    assert callable(sdss_query.create_datafiles) and "{class_condition}" in sdss_query.SQL_Query


@pytest.mark.parametrize("script, words", [("quick_cnn_trainer.py", "--preset"), ("sdss_query.py", "--n-galaxies")])
def test_each_script_answers_help(script, words, tmp_path):
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / script), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and words in result.stdout and result.stderr == ""


@pytest.mark.parametrize("command", ["evaluate", "predict", "classify", "merge", "ensemble"])
def test_each_trainer_command_answers_help(command, capsys):
    with pytest.raises(SystemExit) as caught:
        quick_cnn_trainer.main([command, "--help"])
    assert caught.value.code == 0 and f"quick_cnn_trainer.py {command}" in capsys.readouterr().out


def test_a_library_call_raises_the_projects_error_type(tmp_path):
    with pytest.raises(errors.DataFileError, match="no such directory") as caught:
        quick_cnn_trainer.train(data=tmp_path / "missing", out=tmp_path / "out")
    assert isinstance(caught.value, errors.GalaxyClassificationError) and isinstance(caught.value, ValueError)
    with pytest.raises(errors.UsageError, match="n_galaxies"):
        sdss_query.create_datafiles(n_galaxies=0, out_dir=tmp_path / "data")
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_notes_are_warnings_a_caller_can_filter(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "old", n_galaxies=6, size=16)
    with pytest.warns(errors.GalaxyNote, match="no dataset.json"):
        quick_cnn_trainer.get_data(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.GalaxyNote)
        with pytest.raises(errors.GalaxyNote):
            quick_cnn_trainer.get_data(directory)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("ignore", errors.GalaxyNote)
        quick_cnn_trainer.get_data(directory)
    assert seen == []


def test_the_command_line_prints_each_note_once(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "old", n_galaxies=6, size=16)
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), "predict", str(directory),
                             str(directory), "--out", str(tmp_path / "p.csv")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert sum("no dataset.json" in line for line in notes) == 1, notes  # the same directory twice: said once
    assert len(notes) == len(set(notes)), notes
    assert "Warning" not in result.stderr
