"""Bad input to sdss_query is refused with a ValueError naming the parameter,
before any request or file write, from Python and from the command line."""

import subprocess
import sys

import pytest

import sdss_query
from galaxy_classification.data import storage

from conftest import PROJECT_ROOT

VALID = dict(
    n_galaxies=4, galaxy_type="both", lower_z_limit=0.1, upper_z_limit=0.3, lower_flux_limit=50,
    upper_flux_limit=500, data_release="DR15", image_scale_factor=0.1,
)

BAD_INPUTS = [
    ({"n_galaxies": 0}, "n_galaxies"),
    ({"n_galaxies": -1}, "n_galaxies"),
    ({"n_galaxies": 2.5}, "n_galaxies"),
    ({"n_galaxies": "10"}, "n_galaxies"),
    ({"n_galaxies": True}, "n_galaxies"),
    ({"galaxy_type": "spirals"}, "galaxy_type"),
    ({"lower_z_limit": 0.3, "upper_z_limit": 0.1}, "z_limit"),
    ({"lower_z_limit": -0.1}, "lower_z_limit"),
    ({"upper_z_limit": -0.2, "lower_z_limit": -0.3}, "z_limit"),
    ({"lower_flux_limit": 500, "upper_flux_limit": 50}, "flux_limit"),
    ({"lower_flux_limit": -5}, "lower_flux_limit"),
    ({"image_scale_factor": 0}, "image_scale_factor"),
    ({"image_scale_factor": -1}, "image_scale_factor"),
    ({"data_release": "DR"}, "data_release"),
    ({"data_release": "15"}, "data_release"),
    ({"data_release": "DRX"}, "data_release"),
    ({"data_release": "DR15; DROP"}, "data_release"),
]


@pytest.mark.parametrize("source", ["synthetic", "sdss"])
@pytest.mark.parametrize("bad, name", BAD_INPUTS, ids=[str(bad) for bad, _ in BAD_INPUTS])
def test_bad_input_raises_naming_the_parameter_before_writing(tmp_path, bad, name, source):
    out_dir = tmp_path / "data"
    with pytest.raises(ValueError, match=name):
        sdss_query.create_datafiles(**{**VALID, **bad}, out_dir=out_dir, source=source, login=False)
    assert not out_dir.exists()


def test_bad_input_leaves_an_existing_data_set_untouched(tmp_path):
    sdss_query.create_datafiles(**VALID, image_size=32, out_dir=tmp_path, source="synthetic")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="n_galaxies"):
        sdss_query.create_datafiles(**{**VALID, "n_galaxies": 0}, out_dir=tmp_path, source="synthetic")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_an_out_dir_that_is_a_file_is_refused(tmp_path):
    not_a_directory = tmp_path / "data"
    not_a_directory.write_text("my notes")
    with pytest.raises(ValueError, match="out_dir"):
        sdss_query.create_datafiles(**VALID, out_dir=not_a_directory, source="synthetic")
    assert not_a_directory.read_text() == "my notes"


@pytest.mark.parametrize(
    "arguments, name",
    [
        (["--n-galaxies", "0"], "n_galaxies"),
        (["--n-galaxies", "2.5"], "--n-galaxies"),
        (["--galaxy-type", "spirals"], "galaxy_type"),
        (["--z-min", "0.3", "--z-max", "0.1"], "z_limit"),
        (["--flux-min", "-5"], "lower_flux_limit"),
        (["--scale-factor", "0"], "image_scale_factor"),
        (["--data-release", "DR15; DROP"], "data_release"),
    ],
)
def test_the_command_line_exits_2_with_one_line_naming_the_parameter(tmp_path, arguments, name):
    out_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "sdss_query.py", "--synthetic", *arguments, "--out", str(out_dir)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and name in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out_dir.exists()


def test_the_command_line_refuses_an_out_dir_that_is_a_file(tmp_path):
    not_a_directory = tmp_path / "data"
    not_a_directory.write_text("my notes")
    result = subprocess.run(
        [sys.executable, "sdss_query.py", "--synthetic", "--out", str(not_a_directory)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "out_dir" in result.stderr
    assert not_a_directory.read_text() == "my notes"
    assert not (tmp_path / storage.IMAGES_FILE).exists()


def test_a_catalogue_only_run_refuses_to_sit_beside_old_images(tmp_path):
    sdss_query.create_datafiles(6, source="synthetic", out_dir=tmp_path, image_size=32,
                                image_scale_factor=0.16)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="image_data=False"):
        sdss_query.create_datafiles(6, source="synthetic", out_dir=tmp_path, image_data=False, seed=1)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_the_label_rules_offered_are_the_label_rule_objects(capsys):
    from galaxy_classification.sdss import label_rules

    assert sdss_query.LABEL_RULES is label_rules.LABEL_RULES
    with pytest.raises(SystemExit):
        sdss_query.main(["--help"])
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in label_rules.LABEL_RULES)
