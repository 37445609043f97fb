"""quick_cnn_trainer.py classify: a catalogue in, a classified catalogue out, against the loopback fake.

What a user relies on: rows with an objid or only a position get their radius
from SDSS in few batched queries; every cutout shows the model's field of view;
every input row comes back, classified or with the reason it was not; a rerun
fetches nothing twice; bad input is refused before any request.
"""

import re

import numpy as np
import pandas as pd
import pytest

import quick_cnn_trainer
from galaxy_classification import errors
from galaxy_classification.data.field_of_view import FieldOfView
from galaxy_classification.inference import parts, results
from galaxy_classification.model import architectures
from galaxy_classification.model import files as model_files
from galaxy_classification.sdss import lookup

from fake_sdss import FakeSDSS, make_sky
from test_sdss_client import point_client_at


@pytest.fixture
def fake(monkeypatch):
    server = FakeSDSS(make_sky(n_spiral=6, n_elliptical=6, n_uncertain=0, n_outside=2)).start()
    point_client_at(server, monkeypatch)
    monkeypatch.setenv("SDSS_QUERY_WINDOW", "0.06")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small untrained classifier that records a Galaxy Zoo-like field (r band)."""
    stem = tmp_path_factory.mktemp("model") / "tiny"
    network = architectures.build_modern_cnn(16, widths=(4, 8), convs_per_block=(1, 1))
    _, keras_file = model_files.save_classifier_files(network, stem, 0.35, 16, FieldOfView(10.152, band="r"))
    return keras_file


def write_catalogue(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_objids_and_positions_are_looked_up_fetched_at_the_models_field_and_classified(fake, model_path, tmp_path):
    inside = [galaxy for galaxy in fake.galaxies if galaxy["dec"] > -30]
    by_objid, by_position, with_radius = inside[0], inside[1], inside[2]
    rows = [
        {"name": "A", "ra": by_objid["ra"], "dec": by_objid["dec"], "objid": str(by_objid["objid"])},
        {"name": "B", "ra": by_position["ra"] + 0.3 / 3600, "dec": by_position["dec"], "objid": ""},
        {"name": "C", "ra": with_radius["ra"], "dec": with_radius["dec"], "objid": str(with_radius["objid"]),
         "petroR90_r": 4.0},
        {"name": "D", "ra": 10.0, "dec": 10.0, "objid": ""},  # no galaxy there
        {"name": "E", "ra": by_objid["ra"], "dec": by_objid["dec"], "objid": "1237000000000000001"},  # unknown
    ]
    catalogue = write_catalogue(tmp_path / "mine.csv", rows)
    out = tmp_path / "classified.csv"

    table = quick_cnn_trainer.classify(catalogue, str(model_path), out, login=False, workers=2, progress=False)

    assert list(table["name"]) == ["A", "B", "C", "D", "E"]  # every row, in order
    assert list(table["status"]) == ["ok", "ok", "ok", "failed", "failed"]
    assert table.loc[1, "objid"] == str(by_position["objid"])  # found by position
    assert "within 2 arcsec" in table.loc[3, "reason"] and "not found" in table.loc[4, "reason"]
    assert fake.count("sqlsearch") == 2  # one query by objid, one by position, for all rows
    assert fake.count("getjpeg") == 3
    # each cutout spans the model's view: 3.5532 x petroR90_r over 64 px
    view = 0.35 * 10.152
    assert table.loc[0, "cutout_scale"] == pytest.approx(view * by_objid["petror90_r"] / 64)
    assert table.loc[2, "cutout_scale"] == pytest.approx(view * 4.0 / 64)  # the catalogue's own radius
    assert table.loc[0, "radius_used"] == "petroR90_r"
    ok = table["status"] == "ok"
    np.testing.assert_allclose(table.loc[ok, "p_spiral"] + table.loc[ok, "p_elliptical"], 1.0, atol=1e-5)
    assert table.loc[~ok, "p_spiral"].isna().all() and (table.loc[~ok, "predicted"].fillna("") == "").all()
    assert (table["model"] == "tiny.keras").all() and table["model_sha256"].str.len().eq(64).all()
    assert (table["data_release"] == "DR15").all()
    written = pd.read_csv(out, dtype={"objid": str})
    assert list(written["objid"][:3]) == [str(g["objid"]) for g in (by_objid, by_position, with_radius)]


def test_outside_the_footprint_is_a_reason_not_a_lost_row(fake, model_path, tmp_path):
    outside = [galaxy for galaxy in fake.galaxies if galaxy["dec"] < -30][0]
    catalogue = write_catalogue(tmp_path / "c.csv", [
        {"ra": outside["ra"], "dec": outside["dec"], "objid": str(outside["objid"])}])
    table = quick_cnn_trainer.classify(catalogue, str(model_path), tmp_path / "out.csv", login=False,
                                       progress=False)
    assert table.loc[0, "status"] == "failed" and "footprint" in table.loc[0, "reason"]


def test_a_rerun_fetches_only_what_is_missing(fake, model_path, tmp_path):
    inside = [galaxy for galaxy in fake.galaxies if galaxy["dec"] > -30][:4]
    catalogue = write_catalogue(tmp_path / "c.csv", [
        {"ra": g["ra"], "dec": g["dec"], "objid": str(g["objid"]), "petroR90_r": g["petror90_r"]} for g in inside])
    out = tmp_path / "out.csv"
    first = quick_cnn_trainer.classify(catalogue, str(model_path), out, login=False, progress=False)
    assert fake.count("getjpeg") == 4 and fake.count("sqlsearch") == 0  # radii given: no lookup at all
    fake.reset_counts()
    again = quick_cnn_trainer.classify(catalogue, str(model_path), out, login=False, progress=False)
    assert fake.count() == 0
    np.testing.assert_allclose(again["p_elliptical"], first["p_elliptical"])


def test_labels_in_the_catalogue_give_an_accuracy(fake, model_path, tmp_path, capsys):
    inside = [galaxy for galaxy in fake.galaxies if galaxy["dec"] > -30][:4]
    catalogue = write_catalogue(tmp_path / "c.csv", [
        {"ra": g["ra"], "dec": g["dec"], "objid": str(g["objid"]), "label": g["elliptical"]} for g in inside])
    quick_cnn_trainer.classify(catalogue, str(model_path), tmp_path / "out.csv", login=False, progress=False)
    assert "accuracy where the catalogue has a label" in capsys.readouterr().out


def test_the_login_route_looks_up_through_casjobs(fake, model_path, tmp_path, monkeypatch):
    from fake_sdss import PASSWORD, USERNAME

    monkeypatch.setenv("SCISERVER_USERNAME", USERNAME)
    monkeypatch.setenv("SCISERVER_PASSWORD", PASSWORD)
    galaxy = [g for g in fake.galaxies if g["dec"] > -30][0]
    catalogue = write_catalogue(tmp_path / "c.csv", [{"ra": galaxy["ra"], "dec": galaxy["dec"]}])
    table = quick_cnn_trainer.classify(catalogue, str(model_path), tmp_path / "out.csv", login=True,
                                       progress=False)
    assert table.loc[0, "status"] == "ok" and table.loc[0, "objid"] == str(galaxy["objid"])
    assert (fake.count("login"), fake.count("casjobs"), fake.count("sqlsearch")) == (1, 1, 0)


@pytest.mark.parametrize("rows, message", [
    ([{"x": 1, "dec": 2}], "no ra column"),
    ([{"ra": 400.0, "dec": 2.0}], r"row 2, column ra: '400.0' is not a number in \[0, 360\]"),
    ([{"ra": 10.0, "dec": 5.0}, {"ra": 10.0, "dec": -100.0}], r"row 3, column dec"),
    ([{"ra": "ten", "dec": 5.0}], "row 2, column ra"),
    ([{"ra": 10.0, "dec": 5.0, "objid": "12; DROP"}], "not an SDSS objid"),
])
def test_bad_input_is_refused_before_any_request_naming_row_and_column(fake, model_path, tmp_path, capsys,
                                                                       rows, message):
    catalogue = write_catalogue(tmp_path / "c.csv", rows)
    with pytest.raises(SystemExit) as caught:
        quick_cnn_trainer.main(["classify", str(catalogue), "--model", str(model_path), "--no-login",
                                "--out", str(tmp_path / "out.csv")])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.search(message, error), error
    assert fake.count() == 0 and not (tmp_path / "out.csv").exists()


def test_an_unreadable_catalogue_is_refused(fake, model_path, tmp_path):
    (tmp_path / "c.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(errors.CatalogueError):
        quick_cnn_trainer.classify(tmp_path / "c.csv", str(model_path), tmp_path / "o.csv", login=False)
    with pytest.raises(errors.CatalogueError, match="no such catalogue"):
        quick_cnn_trainer.classify(tmp_path / "absent.csv", str(model_path), tmp_path / "o.csv", login=False)
    assert fake.count() == 0


def test_lookup_sql_is_built_from_numbers_and_digits_only():
    sql = lookup.position_lookup_sql([(0, 150.5, -2.25), (7, 10.0, 1e-3)])
    assert "(VALUES (0, 150.5, -2.25), (7, 10.0, 0.001))" in sql
    assert "dbo.fGetNearbyObjEq(t.ra, t.dec, 0.03333333333333333)" in sql
    assert "WHERE g.objID IN (1, 22)" in lookup.objid_lookup_sql(["1", "22"])
    with pytest.raises(ValueError):
        lookup.objid_lookup_sql(["1 OR 1=1"])


def test_min_confidence_makes_unsure_galaxies_uncertain():
    probabilities = np.array([[0.9, 0.1], [0.45, 0.55], [0.3, 0.7], [np.nan, np.nan]])
    assert list(results.predicted_classes(probabilities, 0.6)) == ["spiral", "uncertain", "elliptical", ""]
    assert list(results.predicted_classes(probabilities)) == ["spiral", "elliptical", "elliptical", ""]


def test_classify_in_parts_merges_to_the_whole_catalogue(fake, model_path, tmp_path):
    inside = [galaxy for galaxy in fake.galaxies if galaxy["dec"] > -30][:5]
    catalogue = write_catalogue(tmp_path / "c.csv", [
        {"name": f"g{i}", "ra": g["ra"], "dec": g["dec"], "objid": str(g["objid"]), "petroR90_r": g["petror90_r"]}
        for i, g in enumerate(inside)])
    whole = quick_cnn_trainer.classify(catalogue, str(model_path), tmp_path / "whole.csv", login=False,
                                       progress=False)
    for k in range(2):
        quick_cnn_trainer.classify(catalogue, str(model_path), tmp_path / "parts.csv", login=False,
                                   progress=False, part=(k, 2))
    merged = parts.merge(tmp_path / "parts.csv")
    assert list(merged["name"]) == list(whole["name"])
    np.testing.assert_allclose(pd.to_numeric(merged["p_elliptical"]), whole["p_elliptical"], atol=1e-6)
