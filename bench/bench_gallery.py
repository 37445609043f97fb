"""Benchmark: the HTML gallery at 1,000 and 20,000 galaxies, in headless Chromium.

For each size it writes an evaluate gallery (the heavier kind: labels and a correction menu per row)
from real thumbnails (the model's 64 px view of the shared Galaxy Zoo cutouts, cycled; synthetic
frames without the shared data), then prints the page's size, the thumbnails' count and size, the
time from opening the file to the page having drawn its rows (``window.galleryReady``, measured by
the browser from the start of navigation), and the time a redraw takes while scrolling through the
whole list (200 positions; under 16 ms is 60 frames a second). A screenshot of the 20,000-galaxy
page goes to ``bench/output/gallery/screenshot.png``::

    .venv/bin/python bench/bench_gallery.py

Needs Debian's chromium and chromium-driver, and selenium (the [test] extra).
"""

import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from galaxy_classification.data import image_stores  # noqa: E402
from galaxy_classification.inference import gallery  # noqa: E402

GZ1_DIR = ROOT.parent / "shared" / "data" / "gz1"
OUTPUT = ROOT / "bench" / "output" / "gallery"
SIZES = (1000, 20000)


def source_frames(count):
    """Up to ``count`` frames to make thumbnails of, and their crop (the shipped model's view)."""
    if (GZ1_DIR / "labels.csv").is_file():
        files = [GZ1_DIR / name for name in pd.read_csv(GZ1_DIR / "labels.csv")["file"].head(count)]
        return image_stores.ImageFiles(files), 3.55 / 10.152, f"{len(files)} shared Galaxy Zoo cutouts, cycled"
    from trainer_helpers import galaxy_images

    images = galaxy_images(np.arange(min(count, 500)) % 2, size=128)
    np.save(OUTPUT / "frames.npy", images)
    return image_stores.NpyImages(OUTPUT / "frames.npy"), 1.0, f"{len(images)} synthetic frames, cycled"


def write_page(size, frames, crop):
    folder = OUTPUT / f"{size}"
    shutil.rmtree(folder, ignore_errors=True)
    thumbnails = folder / "gallery_thumbnails"
    used = image_stores.subset_images(frames, np.arange(min(size, len(frames))))
    names = gallery.write_thumbnails(used, crop, 64, thumbnails)
    rng = np.random.default_rng(size)
    p_elliptical = rng.random(size)
    labels = rng.integers(0, 2, size)
    table = pd.DataFrame({
        "source": [f"images/{index:06d}.jpeg" for index in range(size)], "label": labels,
        "p_spiral": 1 - p_elliptical, "p_elliptical": p_elliptical,
        "predicted": np.where(p_elliptical >= 0.5, "elliptical", "spiral"),
        "objid": [str(1237648720693755918 + index) for index in range(size)]})
    table["explore_url"] = [f"https://skyserver.sdss.org/dr15/en/tools/explore/summary.aspx?id={objid}"
                            for objid in table["objid"]]
    # every thumbnail is its own file, as a real run of that size writes them
    cycled = [names[index % len(names)] for index in range(size)]
    for index in range(len(names), size):
        shutil.copyfile(thumbnails / names[index % len(names)], thumbnails / f"{index:06d}.jpg")
        cycled[index] = f"{index:06d}.jpg"
    page = gallery.write_gallery(table, cycled, folder / "gallery.html", f"bench: {size} galaxies",
                                 kind="evaluate")
    return page, thumbnails


def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={OUTPUT / 'profile'}", "--window-size=1280,900"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))


SCROLL_TIMING = """
const list = document.getElementById('list'), times = [];
for (let step = 0; step < 200; step++) {
  list.scrollTop = step / 199 * (list.scrollHeight - list.clientHeight);
  const started = performance.now();
  draw(false);
  times.push(performance.now() - started);
}
return times;
"""


def main():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print("no browser: install Debian's chromium and chromium-driver")
        return 0
    OUTPUT.mkdir(parents=True, exist_ok=True)
    frames, crop, what = source_frames(max(SIZES))
    print(f"thumbnails from {what}")
    driver = browser()
    try:
        for size in SIZES:
            started = time.perf_counter()
            page, thumbnails = write_page(size, frames, crop)
            written = time.perf_counter() - started
            files = list(thumbnails.iterdir())
            ready = []
            for _ in range(3):
                driver.get(page.as_uri())
                ready.append(driver.execute_script("return window.galleryReady"))
            shown = driver.find_element("id", "count").text
            drawn = len(driver.find_elements("css selector", ".row"))
            redraws = driver.execute_script(SCROLL_TIMING)
            print(f"{size:6d} galaxies: page {page.stat().st_size / 1e6:.2f} MB, {len(files)} thumbnails "
                  f"{sum(path.stat().st_size for path in files) / 1e6:.1f} MB (written in {written:.1f} s); "
                  f"ready {statistics.median(ready):.0f} ms after navigation (median of 3: "
                  f"{', '.join(f'{value:.0f}' for value in ready)}); '{shown}', {drawn} rows in the page; "
                  f"redraw while scrolling: median {statistics.median(redraws):.2f} ms, worst "
                  f"{max(redraws):.2f} ms over {len(redraws)} positions", flush=True)
        driver.get(page.as_uri())
        time.sleep(0.5)
        driver.save_screenshot(str(OUTPUT / "screenshot.png"))
        print(f"screenshot: {OUTPUT / 'screenshot.png'}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
