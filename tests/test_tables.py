"""Tables astronomers keep: ECSV, FITS and VOTable in and out, units kept, ids exact."""

import warnings

import numpy as np
import pandas as pd
import pytest

import quick_cnn_trainer
from galaxy_classification import tables

from trainer_helpers import write_data_directory

pytest.importorskip("astropy")
from astropy.table import Table  # noqa: E402

BIG_SPECOBJID = "10133099161583616000"  # above 2^63
OBJID = "1237648720693755918"


def catalogue():
    return pd.DataFrame({"objid": [OBJID, "1237648720693755919"], "specObjID": [BIG_SPECOBJID, "299489677444933632"],
                         "ra": [150.0137, 150.5], "dec": [2.0071, -1.25], "cutout_scale": [0.0512, 0.0433],
                         "predicted": ["spiral", "elliptical"]})


@pytest.mark.parametrize("suffix", [".ecsv", ".fits", ".vot"])
def test_round_trip_keeps_units_and_exact_twenty_digit_ids(tmp_path, suffix):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # long FITS keys become HIERARCH cards without a warning to the user
        path = tables.write_table(catalogue(), tmp_path / f"t{suffix}", meta={"model": "sdss-gz1.keras",
                                                                              "data_release": "DR15"})
    table = Table.read(path)
    assert str(table["ra"].unit) == "deg" and str(table["dec"].unit) == "deg"
    assert table["cutout_scale"].unit.to_string() in ("arcsec / pix", "arcsec pix-1")
    if suffix != ".vot":
        assert table["specObjID"].dtype == np.uint64 and int(table["specObjID"][0]) == int(BIG_SPECOBJID)
        meta = {key.lower(): value for key, value in table.meta.items()}  # FITS keywords are upper case
        assert meta["model"] == "sdss-gz1.keras" and meta["data_release"] == "DR15"
    back = tables.read_table(path)
    assert list(back["specObjID"]) == [BIG_SPECOBJID, "299489677444933632"]
    assert list(back["objid"]) == [OBJID, "1237648720693755919"]
    assert float(back["ra"][0]) == pytest.approx(150.0137)


def test_an_unknown_suffix_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"\.ecsv.*\.fits"):
        tables.write_table(catalogue(), tmp_path / "t.parquet")


def test_explore_links_follow_the_release():
    assert tables.explore_url(OBJID, "DR15") == (
        f"https://skyserver.sdss.org/dr15/en/tools/explore/summary.aspx?id={OBJID}")
    assert "dr7/en/tools/explore/obj.asp?id=587722952767439450" in tables.explore_url("587722952767439450", "DR7")
    assert tables.explore_url("", "DR15") == "" and tables.explore_url(OBJID, "synthetic") == ""


def test_predict_writes_fits_with_the_models_facts_and_sky_links(tmp_path):
    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=24, size=24)
    assert quick_cnn_trainer.main(["--data", str(directory), "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    out = tmp_path / "predictions.fits"
    quick_cnn_trainer.predict([directory], model=str(tmp_path / "run" / "my-galaxy-model.keras"), out=out,
                              progress=False)
    table = Table.read(out)
    meta = {key.lower(): value for key, value in table.meta.items()}
    assert len(table) == 24 and meta["model"] == "my-galaxy-model.keras" and len(meta["model_sha256"]) == 64
    assert table["objid"].dtype == np.uint64
    assert str(table["explore_url"][0]).startswith("https://skyserver.sdss.org/dr15/en/tools/explore/")
