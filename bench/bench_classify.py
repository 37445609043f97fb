"""Benchmark: ``quick_cnn_trainer.py classify`` on real galaxy pixels, end to end.

A loopback fake SDSS (tests/fake_sdss.py) holds the fixed held-out Galaxy Zoo 1
galaxies (bench/gz1_holdout.csv) at made-up positions with petroR90_r = 5"; its
image service cuts each cutout from the galaxy's real 423 px frame (10.152 x
petroR90_r across) at whatever scale and size is asked, as the real service
renders any field. The catalogue gives half the galaxies by objid and half by
position only, with their labels, and no radii; ``classify`` with the shipped
model looks the radii up, fetches the cutouts at the model's field of view
under the default politeness cap (10 cutouts a second) and classifies them.

    .venv/bin/python bench/bench_classify.py              # 600 galaxies, about 75 s (the cap)
    .venv/bin/python bench/bench_classify.py --limit 100

Prints galaxies, requests by kind, wall time and accuracy. Skips when
../shared/data/gz1 is absent.
"""

import io
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
GZ1_DIR = ROOT.parent / "shared" / "data" / "gz1"
RADIUS_R = 5.0  # arcsec, made up: the fake's frames are cut relative to it

from bench_gz1 import holdout_from_command_line  # noqa: E402

from fake_sdss import FakeSDSS  # noqa: E402


def real_pixel_sky(holdout):
    sky = []
    for index, row in enumerate(holdout.itertuples(index=False)):
        sky.append({"objid": int(row.objid), "specobjid": 299489677444933632 + index, "ra": round(150 + 0.01 * index, 6),
                    "dec": 2.0, "petror90_g": RADIUS_R * 1.05, "petror90_r": RADIUS_R, "petroflux_g": 100.0,
                    "lnldev_g": -100.0, "lnlexp_g": -100.0, "lnldev_r": -100.0, "lnlexp_r": -100.0, "z": 0.1,
                    "spiral": 0, "elliptical": 0, "uncertain": 0, "p_cs_debiased": 0.5, "p_el_debiased": 0.5,
                    "nvote": 30})
    return sky


def cutouts_from_frames(files_by_objid):
    from PIL import Image

    from galaxy_classification.data.field_of_view import GALAXY_ZOO_1_FIELD, FieldOfView, recut_frame

    def render(objid, width, height, scale):
        wanted = FieldOfView(width * scale / RADIUS_R)
        with Image.open(files_by_objid[objid]) as frame:
            pixels = recut_frame(frame, GALAXY_ZOO_1_FIELD, wanted, width)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    return render


def main():
    holdout = holdout_from_command_line(__doc__.split("\n\n")[0])
    if holdout is None:
        return
    import quick_cnn_trainer

    sky = real_pixel_sky(holdout)
    server = FakeSDSS(sky).start()
    server.cutout_source = cutouts_from_frames({row.objid: GZ1_DIR / row.file for row in holdout.itertuples()})
    os.environ.update({"SDSS_SKYSERVER_URL": server.url})
    catalogue = pd.DataFrame({"ra": [galaxy["ra"] for galaxy in sky], "dec": [galaxy["dec"] for galaxy in sky],
                              "objid": [str(galaxy["objid"]) if index % 2 == 0 else "" for index, galaxy in
                                        enumerate(sky)],
                              "label": holdout["label"]})
    try:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "catalogue.csv"
            catalogue.to_csv(path, index=False)
            started = time.perf_counter()
            table = quick_cnn_trainer.classify(path, out=Path(scratch) / "classified.csv", login=False,
                                               progress=False)
            seconds = time.perf_counter() - started
    finally:
        server.stop()
    classified = table["status"] == "ok"
    truth = pd.to_numeric(table["label"]).map({0: "spiral", 1: "elliptical"})
    correct = (table.loc[classified, "predicted"] == truth[classified]).sum()
    print(f"\n{len(table)} galaxies ({(catalogue['objid'] != '').sum()} by objid, {(catalogue['objid'] == '').sum()} "
          f"by position), {int(classified.sum())} classified")
    print(f"requests: {server.count('sqlsearch')} lookup queries, {server.count('getjpeg')} cutouts; "
          f"wall time {seconds:.1f} s (cutouts capped at SDSS_MAX_RATE="
          f"{os.environ.get('SDSS_MAX_RATE', '10')}/s)")
    print(f"accuracy {correct / classified.sum():.1%} ({int(correct)} of {int(classified.sum())})")


if __name__ == "__main__":
    main()
