"""The HTML gallery, opened from the disk in a real browser (Debian's headless Chromium driven by
Selenium): galaxies shown and counted, sorted and filtered, labels marked by eye, kept over a reload,
downloaded, and applied by the trainer."""

import json
import re
import shutil
import time

import pandas as pd
import pytest

import quick_cnn_trainer
from galaxy_classification.inference import gallery

from conftest import PROJECT_ROOT
from trainer_helpers import write_image_csv

PRETRAINED = PROJECT_ROOT / "models" / "sdss-gz1.keras"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """40 labelled galaxies judged by the shipped model: evaluate's gallery.html."""
    directory = tmp_path_factory.mktemp("gallery")
    csv_path, _, _ = write_image_csv(directory, n_galaxies=40, size=64, field_of_view=10.152)
    quick_cnn_trainer.evaluate(str(PRETRAINED), str(csv_path), directory / "eval", progress=False)
    return csv_path, directory / "eval"


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no browser: install Debian's chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.downloads = tmp_path / "downloads"
    yield driver
    driver.quit()


def shown(driver):
    return driver.find_element("id", "count").text


def choose(driver, select_id, value):
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", select_id)).select_by_value(value)


def row_probabilities(driver):
    texts = [node.text for node in driver.find_elements("css selector", ".row .prob")]
    return [float(re.search(r"[\d.]+$", text).group()) for text in texts if text.startswith("p(elliptical)")]


def test_the_page_stands_alone(evaluated):
    _, out = evaluated
    page = (out / "gallery.html").read_text()
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert all(address.startswith("https://skyserver.sdss.org/") for address in addresses), addresses
    thumbnails = sorted((out / "gallery_thumbnails").iterdir())
    assert len(thumbnails) == 40 and all(path.stat().st_size > 300 for path in thumbnails)


def test_the_gallery_shows_sorts_filters_and_keeps_corrections(evaluated, browser, tmp_path):
    csv_path, out = evaluated
    table = pd.read_csv(out / "predictions.csv")
    browser.get((out / "gallery.html").as_uri())
    assert shown(browser) == "40 of 40 galaxies shown"
    drawn = browser.find_elements("css selector", ".row img")
    assert 0 < len(drawn) < 40  # only the rows in view (and a few either side) are drawn
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 64
               for image in drawn)
    browser.execute_script("document.getElementById('list').scrollTop = 1e6")
    time.sleep(0.2)
    last = browser.find_elements("css selector", ".row")
    assert max(int(row.get_attribute("data-index")) for row in last) == 39  # scrolled to the end: the last galaxy

    choose(browser, "sort", "p-desc")
    probabilities = row_probabilities(browser)
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) > 5
    assert probabilities[0] == pytest.approx(table["p_elliptical"].max(), abs=1e-3)
    choose(browser, "filter", "spiral")
    assert shown(browser) == f"{int((table['predicted'] == 'spiral').sum())} of 40 galaxies shown"
    choose(browser, "filter", "disagrees")
    disagreeing = int((table["predicted"] != table["label"].map({0: "spiral", 1: "elliptical"})).sum())
    assert shown(browser) == f"{disagreeing} of 40 galaxies shown"

    choose(browser, "filter", "all")
    choose(browser, "sort", "table")
    selects = browser.find_elements("css selector", ".row select.correction")
    from selenium.webdriver.support.ui import Select

    first_label, second_label = table["label"][0], table["label"][1]
    Select(selects[0]).select_by_value(str(1 - first_label))
    Select(browser.find_elements("css selector", ".row select.correction")[1]).select_by_value("leave")
    assert browser.find_element("id", "marks").text == "2 label(s) marked"

    browser.refresh()
    assert browser.find_element("id", "marks").text == "2 label(s) marked"
    choose(browser, "filter", "marked")
    assert shown(browser) == "2 of 40 galaxies shown"

    browser.find_element("id", "download").click()
    download = browser.downloads / gallery.CORRECTIONS_FILE
    for _ in range(100):
        if download.is_file():
            break
        time.sleep(0.05)
    corrections = pd.read_csv(download, dtype=str, keep_default_na=False)
    names = ("spiral", "elliptical")
    assert list(corrections.columns) == ["file", "objid", "old_label", "new_label"]
    assert corrections.to_dict("records") == [
        {"file": table["source"][0], "objid": str(table["objid"][0]), "old_label": names[first_label],
         "new_label": names[1 - first_label]},
        {"file": table["source"][1], "objid": str(table["objid"][1]), "old_label": names[second_label],
         "new_label": "leave out"}]

    quick_cnn_trainer.train(str(csv_path), "modern", tmp_path / "run", epochs=1, image_size=16, progress=False,
                            label_corrections=download)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    record = written["label_corrections"]
    assert record["changed"] == 1 and record["left_out"] == 1 and len(record["sha256"]) == 64
    assert sum(written["split"].values()) == 39  # the galaxy left out is not trained, validated or tested on


def test_predict_writes_a_gallery_beside_its_table(tmp_path, capsys):
    csv_path, _, _ = write_image_csv(tmp_path, n_galaxies=6, size=64, field_of_view=10.152)
    (tmp_path / "images" / "broken.jpeg").write_text("not a picture")
    assert quick_cnn_trainer.main(["predict", str(tmp_path / "images"), "--out", str(tmp_path / "p.csv"),
                                   "--gallery"]) == 0
    page = (tmp_path / "p.html").read_text()
    rows = json.loads(re.search(r'id="gallery-data" type="application/json">(.*?)</script>', page, re.S)
                      .group(1).replace("<\\/", "</"))["rows"]
    assert len(rows) == 7 and sum(row["t"] == "" for row in rows) == 1 and sum(row["st"] == "failed" for row in rows) == 1
    assert len(list((tmp_path / "p_thumbnails").iterdir())) == 6
    assert "wrote" in capsys.readouterr().out
