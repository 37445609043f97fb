"""Benchmark: your own survey's galaxies, few of them. The shipped model as it is, training from
scratch, and finetuning the shipped model (--init-from pretrained), on shifted renderings of the
shared Galaxy Zoo 1 cutouts.

Three shifts stand for another survey or another colour stretch (same field of view):

- ``grey``: luminance only, as a single-band survey or a grey rendering gives;
- ``stretch``: another colour stretch: saturation halved, a gamma of 0.6 (faint light brighter),
  a warmer white balance;
- ``seeing``: worse seeing and more noise: a Gaussian blur of 2.5 px (of a 423 px frame, about
  1.5 arcsec more for a typical galaxy), Gaussian noise of 10 grey levels, JPEG quality 70.

The test galaxies are the 600 of ``bench/gz1_holdout.csv``, which the shipped model never saw; the
training galaxies (150 or 500, balanced, drawn per seed) come from the rest, which it saw in SDSS
colours only, never shifted. For each shift, size and seed (3 seeds), a run trains ``--preset modern``
from scratch and finetunes ``--init-from pretrained`` on the same galaxies (a tenth of them held back
inside the run for its own test split), then ``evaluate`` judges it on the shifted test galaxies.
The table gives the mean accuracy over the seeds with the range, a 95% interval of the pooled
accuracy (Wilson), the mean ROC AUC and the mean wall time of a training run; everything runs in one
process, one run after another::

    .venv/bin/python bench/bench_finetune.py                  # about 40 minutes on 2 cores
    .venv/bin/python bench/bench_finetune.py --shifts grey --sizes 150 --seeds 1   # a quick look

Without ``../shared/data/gz1`` the bench says so and exits with status 0.
"""

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image, ImageEnhance, ImageFilter  # noqa: E402

from galaxy_classification.data.field_of_view import GALAXY_ZOO_1_FIELD  # noqa: E402

GZ1_DIR = ROOT.parent / "shared" / "data" / "gz1"
HOLDOUT_LIST = ROOT / "bench" / "gz1_holdout.csv"
OUTPUT = ROOT / "bench" / "output" / "finetune"
SHIFTS = ("grey", "stretch", "seeing")


def shifted(image, shift, rng):
    """One RGB frame as the shifted survey would show it."""
    if shift == "grey":
        return image.convert("L").convert("RGB")
    if shift == "stretch":
        pixels = np.asarray(ImageEnhance.Color(image).enhance(0.5), dtype=np.float32) / 255.0
        pixels = pixels ** 0.6 * np.array([1.06, 1.0, 0.9], dtype=np.float32)
        return Image.fromarray(np.clip(pixels * 255.0, 0, 255).astype(np.uint8))
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(2.5)), dtype=np.float32)
    noisy = blurred + rng.normal(0.0, 10.0, blurred.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def render(shift, table, folder):
    """The frames of ``table`` rendered with ``shift`` into ``folder`` (once), and a file,label CSV of them."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for file in table["file"]:
        target = images / Path(file).name
        if not target.is_file():
            with Image.open(GZ1_DIR / file) as image:
                shifted(image.convert("RGB"), shift, rng).save(target, quality=70 if shift == "seeing" else 90)
    return table.assign(file=[f"images/{Path(file).name}" for file in table["file"]],
                        field_of_view=GALAXY_ZOO_1_FIELD.petro_radii)


def balanced_sample(pool, size, seed):
    rng = np.random.default_rng(seed)
    halves = [pool[pool["label"] == label] for label in (0, 1)]
    picks = [half.iloc[rng.choice(len(half), size // 2, replace=False)] for half in halves]
    return pd.concat(picks).sample(frac=1.0, random_state=seed)


def run(data_csv, test_csv, out, seed, init_from):
    """(accuracy, correct, count, ROC AUC, training seconds) of one training run judged on the test set."""
    import quick_cnn_trainer

    options = {"init_from": init_from} if init_from else {"preset": "modern"}
    for attempt in (1, 2):
        started = time.perf_counter()
        try:
            quick_cnn_trainer.train(str(data_csv), out=out, seed=seed, progress=False, test_fraction=0.1, **options)
            break
        except SystemError as error:  # CPython 3.11's "AST constructor recursion depth mismatch", seen once
            if attempt == 2:
                raise
            print(f"{out.name}: {error}; running it again", flush=True)
    seconds = time.perf_counter() - started
    return judge(out / "my-galaxy-model.keras", test_csv, out / "test") + (seconds,)


def judge(model, test_csv, out):
    import quick_cnn_trainer

    metrics = quick_cnn_trainer.evaluate(str(model), str(test_csv), out, progress=False)
    correct = int(round(metrics["accuracy"] * metrics["n_galaxies"]))
    return metrics["accuracy"], correct, metrics["n_galaxies"], metrics["roc_auc"]


def wilson(correct, count, z=1.96):
    p = correct / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return centre - half, centre + half


def summary(label, results):
    accuracies = [result[0] for result in results]
    correct, count = sum(result[1] for result in results), sum(result[2] for result in results)
    low, high = wilson(correct, count)
    seconds = [result[4] for result in results if len(result) > 4]
    timing = f"{np.mean(seconds):6.1f}" if seconds else "     -"
    return (f"| {label:28} | {100 * np.mean(accuracies):5.1f}% | {100 * min(accuracies):5.1f}-{100 * max(accuracies):5.1f}% "
            f"| {100 * low:5.1f}-{100 * high:5.1f}% | {np.mean([result[3] for result in results]):.3f} | {timing} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shifts", nargs="+", choices=SHIFTS, default=list(SHIFTS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[150, 500])
    parser.add_argument("--seeds", type=int, default=3)
    arguments = parser.parse_args()
    if not (GZ1_DIR / "labels.csv").is_file():
        print(f"the shared Galaxy Zoo data is not at {GZ1_DIR}: nothing to measure")
        return 0
    warnings.simplefilter("ignore")
    labelled = pd.read_csv(GZ1_DIR / "labels.csv", dtype={"objid": str}).dropna(subset=["label"])
    labelled["label"] = labelled["label"].astype(int)
    holdout = set(pd.read_csv(HOLDOUT_LIST)["file"])
    test, pool = labelled[labelled["file"].isin(holdout)], labelled[~labelled["file"].isin(holdout)]
    print(f"test: {len(test)} held-out galaxies; training pool: {len(pool)} galaxies", flush=True)
    lines, record = [], {}
    for shift in arguments.shifts:
        folder = OUTPUT / shift
        wanted = pd.concat([test] + [balanced_sample(pool, size, seed) for size in arguments.sizes
                                     for seed in range(arguments.seeds)]).drop_duplicates("file")
        rendered = render(shift, wanted, folder).set_index("file", drop=False)
        test_csv = folder / "test.csv"
        rendered.loc[[f"images/{Path(file).name}" for file in test["file"]]].to_csv(test_csv, index=False)
        results = {"shipped model as it is": [judge(ROOT / "models" / "sdss-gz1.keras", test_csv, folder / "shipped")]}
        for size in arguments.sizes:
            for seed in range(arguments.seeds):
                sample = rendered.loc[[f"images/{Path(file).name}" for file in balanced_sample(pool, size, seed)["file"]]]
                data_csv = folder / f"train-{size}-seed{seed}.csv"
                sample.to_csv(data_csv, index=False)
                for method, init_from in (("scratch", None), ("finetuned", "pretrained")):
                    outcome = run(data_csv, test_csv, folder / f"{method}-{size}-seed{seed}", seed, init_from)
                    results.setdefault(f"{method}, {size} galaxies", []).append(outcome)
                    print(f"{shift} {method} {size} seed {seed}: {100 * outcome[0]:.1f}% ({outcome[1]}/{outcome[2]}), "
                          f"AUC {outcome[3]:.3f}, trained in {outcome[4]:.0f} s", flush=True)
        lines.append(f"\n**{shift}**\n\n| run | accuracy (mean) | range over seeds | 95% interval (pooled) | ROC AUC | "
                     "training s |\n|---|---|---|---|---|---|")
        lines += [summary(label, outcomes) for label, outcomes in results.items()]
        record[shift] = {label: [list(outcome) for outcome in outcomes] for label, outcomes in results.items()}
    print("\n".join(lines))
    (OUTPUT / "result.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
