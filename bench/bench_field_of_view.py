"""Benchmark: the shipped model on its own frames and on sdss_query-style frames, with no flags.

Takes the fixed held-out Galaxy Zoo 1 galaxies (bench/gz1_holdout.csv), re-cuts
each 423 px frame (10.152 x petroR90_r across) to the seed's field (512 px,
5.12 x petroR90 across: what ``sdss_query.create_datafiles()`` fetches) in a
data directory without dataset.json, and runs ``quick_cnn_trainer.predict``
with no flags on both. Prints accuracy with its Wilson interval for each, and
for the re-cut frames also the crop a model without a field record would have
used (its training crop, 0.35: the previous behaviour).

    .venv/bin/python bench/bench_field_of_view.py          # about 1 minute, ~470 MB in a temp dir
    .venv/bin/python bench/bench_field_of_view.py --limit 200

Skips (exit 0) when ../shared/data/gz1 is absent.
"""

import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GZ1_DIR = ROOT.parent / "shared" / "data" / "gz1"

from bench_gz1 import holdout_from_command_line, wilson_interval  # noqa: E402

import quick_cnn_trainer  # noqa: E402
from galaxy_classification.data import storage  # noqa: E402
from galaxy_classification.data.field_of_view import GALAXY_ZOO_1_FIELD, SEED_FIELD, recut_frame  # noqa: E402


def accuracy_line(name, table, labels):
    correct = int(((table["p_elliptical"].to_numpy() >= 0.5) == labels).sum())
    low, high = wilson_interval(correct, len(labels))
    crops = ", ".join(f"{crop:g}" for crop in sorted(set(table["crop"])))
    print(f"  {name:<46} {correct / len(labels):6.1%}  [95% CI {low:.1%} - {high:.1%}]  ({correct} of "
          f"{len(labels)}; crop {crops})")


def main():
    holdout = holdout_from_command_line(__doc__.split("\n\n")[0])
    if holdout is None:
        return
    from PIL import Image

    paths = [GZ1_DIR / name for name in holdout["file"]]
    labels = holdout["label"].to_numpy()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)

        def frames():
            for path in paths:
                with Image.open(path) as image:
                    yield recut_frame(image, GALAXY_ZOO_1_FIELD, SEED_FIELD, 512)

        storage.write_datafiles(scratch / "data", pd.DataFrame({"objid": holdout["objid"]}), labels,
                                images=frames(), image_shape=(512, 512, 3))
        original = quick_cnn_trainer.predict(paths, out=scratch / "original.csv", progress=False)
        recut = quick_cnn_trainer.predict([scratch / "data"], out=scratch / "recut.csv", progress=False)
        old_way = quick_cnn_trainer.predict([scratch / "data"], out=scratch / "old.csv", progress=False, crop=0.35)
    print(f"\nshipped model, {len(labels)} held-out Galaxy Zoo 1 galaxies, no flags:")
    accuracy_line("original frames (10.152 x petroR90, 423 px)", original, labels)
    accuracy_line("re-cut to the seed's field (5.12 x petroR90, 512 px)", recut, labels)
    accuracy_line("re-cut, with the fixed training crop (before)", old_way, labels)


if __name__ == "__main__":
    main()
