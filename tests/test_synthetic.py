"""The offline synthetic sky writes the same files the SDSS path writes.

Small images (32-64 px) and a few dozen galaxies keep these tests fast.
"""

import subprocess
import sys

import numpy as np
import pytest

import sdss_query
from galaxy_classification import CLASS_NAMES
from galaxy_classification.data import storage, synthetic
from galaxy_classification.sdss import parameters
from galaxy_classification.sdss.label_rules import LIKELIHOOD

from conftest import PROJECT_ROOT

FILES = (storage.CATALOGUE_FILE, storage.IMAGES_FILE, storage.LABELS_FILE, "dataset.json")
COLUMNS = ["objid", "ra", "dec", "petroR90_g", "petroFlux_g", "specObjID", "lnLDeV_g", "lnLExp_g", "lnLDeV_r",
           "lnLExp_r", "z", "cutout_scale", "galaxy_type"]


def make_sample(n_galaxies=12, galaxy_type="both", z=(0.1, 0.3), flux=(50, 500), image_size=48,
                image_scale_factor=0.1, image_data=True):
    return parameters.validate_sample_parameters(
        n_galaxies, galaxy_type, z[0], z[1], flux[0], flux[1], "DR15", image_data, image_scale_factor, image_size
    )


def generate(out_dir, seed=1, **sample_options):
    """Write a synthetic sample; return (images or None, labels, catalogue) as read back."""
    sample = make_sample(**sample_options)
    synthetic.create_synthetic_datafiles(sample, out_dir, seed=seed)
    if sample.image_data:
        return storage.open_datafiles(out_dir)
    return None, np.load(out_dir / storage.LABELS_FILE), storage.read_catalogue(out_dir / storage.CATALOGUE_FILE)


def file_bytes(directory):
    return {name: (directory / name).read_bytes() for name in FILES}


def test_files_have_the_sdss_shapes_dtypes_and_columns(tmp_path):
    images, labels, table = generate(tmp_path, n_galaxies=12, image_size=48)
    assert images.shape == (12, 48, 48, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and set(labels) == {0, 1}
    assert list(table.columns) == COLUMNS
    assert len(table) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)  # no temporary files left behind
    # Real-looking cutouts: a dark sky with a bright galaxy in the middle, not a blank or saturated frame.
    corners = np.concatenate([images[:, :8, :8], images[:, -8:, -8:]], axis=1)
    centres = images[:, 20:28, 20:28]
    assert corners.mean() < 30 < centres.mean()


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        generate(tmp_path / name, seed=seed, n_galaxies=8, image_size=32)
    first, again, other = (file_bytes(tmp_path / name) for name in ("first", "again", "other"))
    assert first == again
    assert first[storage.IMAGES_FILE] != other[storage.IMAGES_FILE]
    assert first[storage.CATALOGUE_FILE] != other[storage.CATALOGUE_FILE]


def test_a_galaxy_depends_only_on_seed_and_position(tmp_path):
    small_images, _, small_table = generate(tmp_path / "small", n_galaxies=5, galaxy_type="spiral", image_size=32)
    large_images, _, large_table = generate(tmp_path / "large", n_galaxies=9, galaxy_type="spiral", image_size=32)
    np.testing.assert_array_equal(small_images, large_images[:5])
    assert small_table.equals(large_table.iloc[:5])


def test_catalogue_labels_and_images_are_row_aligned(tmp_path):
    sample = make_sample(n_galaxies=10, image_size=32, image_scale_factor=0.16)
    synthetic.create_synthetic_datafiles(sample, tmp_path, seed=3)
    images, labels, table = storage.open_datafiles(tmp_path)
    np.testing.assert_array_equal(LIKELIHOOD.labels(table), labels)
    assert list(table["galaxy_type"]) == [CLASS_NAMES[label] for label in labels]
    # Row i of the images is galaxy i of the catalogue, re-rendered on its own.
    galaxies = synthetic.draw_sample(sample, 3)
    for index in (0, 7):
        assert galaxies[index].row["objid"] == table["objid"][index]
        alone = synthetic.render_image(galaxies[index], 32, 0.16, synthetic.galaxy_rng(3, index, "image"))
        np.testing.assert_array_equal(alone, images[index])


@pytest.mark.parametrize(
    "galaxy_type, n_galaxies, expected",
    [("both", 11, {0: 6, 1: 5}), ("spiral", 7, {0: 7}), ("elliptical", 6, {1: 6})],
)
def test_galaxy_type_selects_the_classes(tmp_path, galaxy_type, n_galaxies, expected):
    _, labels, table = generate(tmp_path, galaxy_type=galaxy_type, n_galaxies=n_galaxies, image_data=False)
    assert dict(zip(*np.unique(labels, return_counts=True))) == expected
    assert dict(table["galaxy_type"].value_counts()) == {CLASS_NAMES[k]: v for k, v in expected.items()}


def test_redshift_and_flux_limits_are_honoured(tmp_path):
    _, _, table = generate(tmp_path, n_galaxies=40, z=(0.02, 0.05), flux=(200, 260), image_data=False)
    assert table["z"].between(0.02, 0.05).all()
    assert table["petroFlux_g"].between(200, 260).all()
    assert table["z"].std() > 0 and table["petroFlux_g"].std() > 0


def test_angular_size_shrinks_with_redshift(tmp_path):
    """At the same flux a more distant galaxy is more luminous, hence physically
    larger, but not enough to make up for the distance."""
    _, _, near = generate(tmp_path / "near", n_galaxies=60, z=(0.03, 0.05), flux=(100, 120), image_data=False)
    _, _, far = generate(tmp_path / "far", n_galaxies=60, z=(0.25, 0.3), flux=(100, 120), image_data=False)
    assert near["petroR90_g"].median() > 1.25 * far["petroR90_g"].median()


def test_a_zero_lower_redshift_limit_works(tmp_path):
    images, _, table = generate(tmp_path, n_galaxies=4, z=(0.0, 0.01), image_size=32)
    assert table["z"].between(0.0, 0.01).all() and np.isfinite(table["petroR90_g"]).all()
    assert images.shape == (4, 32, 32, 3)


def test_image_scale_is_the_factor_times_petro_r90(tmp_path):
    """Doubling image_scale_factor halves the galaxy's size in pixels: the area
    inside a fixed isophote shrinks fourfold."""
    options = dict(n_galaxies=6, galaxy_type="elliptical", z=(0.05, 0.06), flux=(400, 500), image_size=64)
    areas = []
    for factor in (0.05, 0.1):
        images, _, _ = generate(tmp_path / str(factor), image_scale_factor=factor, **options)
        light = images.astype(float).mean(axis=3)
        areas.append(np.median((light > 60).sum(axis=(1, 2))))
    assert 3.0 < areas[0] / areas[1] < 5.0


def test_ids_round_trip_as_exact_64_bit_text(tmp_path):
    sample = make_sample(n_galaxies=40, image_data=False)
    synthetic.create_synthetic_datafiles(sample, tmp_path, seed=8)
    written = [galaxy.row for galaxy in synthetic.draw_sample(sample, 8)]
    table = storage.read_catalogue(tmp_path / storage.CATALOGUE_FILE)
    for column in ("objid", "specObjID"):
        assert list(table[column]) == [row[column] for row in written]
        assert all(value.isdigit() and int(value) < 2**64 for value in table[column])
    assert all(int(value) < 2**63 for value in table["objid"])
    # BOSS/eBOSS plates >= 8192 give specObjIDs beyond int64, as in the real archive.
    assert any(int(value) >= 2**63 for value in table["specObjID"])


def test_without_images_only_the_catalogue_and_labels_are_written(tmp_path):
    synthetic.create_synthetic_datafiles(make_sample(n_galaxies=4, image_data=False), tmp_path, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([storage.CATALOGUE_FILE, storage.LABELS_FILE])


def _failing_renderer(fail_at):
    real_render = synthetic.render_image
    calls = []

    def render(*args, **kwargs):
        calls.append(1)
        if len(calls) > fail_at:
            raise RuntimeError("renderer crashed")
        return real_render(*args, **kwargs)

    return render


def test_a_crash_mid_write_leaves_no_partial_files(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "render_image", _failing_renderer(fail_at=3))
    with pytest.raises(RuntimeError, match="renderer crashed"):
        generate(tmp_path / "out", n_galaxies=8, image_size=32)
    assert list((tmp_path / "out").glob("*")) == [] or not any(
        p.suffix in (".npy", ".csv", ".tmp") for p in (tmp_path / "out").iterdir()
    )


def test_a_crash_mid_write_keeps_the_previous_data_set(tmp_path, monkeypatch):
    generate(tmp_path, seed=1, n_galaxies=6, image_size=32)
    before = file_bytes(tmp_path)
    monkeypatch.setattr(synthetic, "render_image", _failing_renderer(fail_at=4))
    with pytest.raises(RuntimeError):
        generate(tmp_path, seed=2, n_galaxies=9, image_size=32)
    assert file_bytes(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_create_datafiles_and_the_command_line_write_the_same_files(tmp_path):
    options = ["--n-galaxies", "6", "--image-size", "32", "--scale-factor", "0.16", "--seed", "4"]
    result = subprocess.run(
        [sys.executable, "sdss_query.py", "--synthetic", *options, "--out", str(tmp_path / "cli")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    images, labels, table = storage.open_datafiles(tmp_path / "cli")
    assert images.shape == (6, 32, 32, 3) and labels.shape == (6,) and len(table) == 6

    sdss_query.create_datafiles(6, image_size=32, image_scale_factor=0.16, seed=4, source="synthetic",
                                out_dir=tmp_path / "api")
    assert file_bytes(tmp_path / "cli") == file_bytes(tmp_path / "api")


def test_the_classes_differ_in_colour_and_concentration_but_overlap(tmp_path):
    """Ellipticals are redder and more concentrated on average, yet some of each
    class sits on the other side: colour alone must not decide the label."""
    images, labels, _ = generate(tmp_path, seed=11, n_galaxies=40, image_size=64, image_scale_factor=0.08)
    pixels = images.astype(float)
    red_minus_blue = pixels[..., 0].mean((1, 2)) - pixels[..., 2].mean((1, 2))
    light = np.maximum(pixels.mean(axis=3) - np.median(pixels.mean(axis=3), axis=(1, 2), keepdims=True), 0)
    y, x = np.mgrid[:64, :64] - 31.5
    radius = np.hypot(x, y)
    concentration = (light * (radius < 4)).sum((1, 2)) / (light * (radius < 13)).sum((1, 2))
    spiral, elliptical = labels == 0, labels == 1
    assert red_minus_blue[elliptical].mean() > red_minus_blue[spiral].mean()
    assert concentration[elliptical].mean() > concentration[spiral].mean()
    assert red_minus_blue[spiral].max() > red_minus_blue[elliptical].min()
