"""Training speed of the two presets, side by side on the same data in one run.

Writes 400 galaxies of 512² under bench/output/ (git-ignored, removed after),
then for each preset builds exactly what ``quick_cnn_trainer.py`` trains with
(the streaming pipeline reading uint8 from the memory-mapped .npy, cropping,
resizing and augmenting per batch, and the preset's compiled model), runs a
short warm-up fit (graph tracing) and times one fit over ``--images`` training
images. Prints images/s per preset and the modern / seed ratio (target >= 20).

    .venv/bin/python bench/bench_throughput.py [--images-seed 100] [--images-modern 1280]
"""

import argparse
import dataclasses
import functools
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import quick_cnn_trainer  # noqa: E402
from bench_data import write_bench_data  # noqa: E402
from galaxy_classification import datasets  # noqa: E402

OUTPUT = ROOT / "bench" / "output" / "throughput"
N_GALAXIES = 400


def training_images_per_second(galaxies, preset, n_images):
    import keras

    from galaxy_classification import models

    keras.utils.set_random_seed(0)
    settings = quick_cnn_trainer.resolve_settings(preset, galaxies)
    size, batch_size = settings.image_size, settings.batch_size
    prepare = functools.partial(quick_cnn_trainer.prepare_images, crop_fraction=settings.crop_fraction,
                                image_size=size)
    augment = (functools.partial(models.augment_batch, **dataclasses.asdict(settings.augment))
               if settings.augment else None)
    weights = datasets.balanced_class_weights(galaxies.labels) if settings.class_weights else None

    def batches(n_batches):
        rows = np.arange(len(galaxies))
        return datasets.as_keras_dataset(datasets.GalaxyBatches(
            galaxies.images, rows, galaxies.labels, batch_size, prepare, shuffle=True, augment=augment,
            class_weights=weights, max_batches=n_batches), workers=quick_cnn_trainer.PREFETCH_WORKERS)

    model = models.build_core_model(settings, size)
    n_batches = max(1, n_images // batch_size)
    models.compile_model(model, settings, n_batches)
    model.fit(batches(3), epochs=1, verbose=0)  # warm-up: tracing, first allocations
    started = time.perf_counter()
    model.fit(batches(n_batches), epochs=1, verbose=0)
    return n_batches * batch_size / (time.perf_counter() - started), model.count_params(), size, batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-seed", type=int, default=100, help="timed training images, seed preset")
    parser.add_argument("--images-modern", type=int, default=1280, help="timed training images, modern preset")
    arguments = parser.parse_args()
    try:
        data_dir = write_bench_data(OUTPUT / "data", N_GALAXIES)
        galaxies = datasets.open_training_data(data_dir)
        print(f"{N_GALAXIES} galaxies of 512x512x3 uint8 in {data_dir}; {os.cpu_count()} CPUs")
        rates = {}
        for preset, n_images in (("seed", arguments.images_seed), ("modern", arguments.images_modern)):
            rate, parameters, size, batch_size = training_images_per_second(galaxies, preset, n_images)
            rates[preset] = rate
            print(f"  {preset:6s}: {rate:8.1f} training images/s  ({parameters:,} parameters, {size}px input, "
                  f"batch {batch_size}, {n_images} images timed)", flush=True)
    finally:
        shutil.rmtree(OUTPUT, ignore_errors=True)
    ratio = rates["modern"] / rates["seed"]
    print(f"modern / seed = {ratio:.1f}x ({'ok' if ratio >= 20 else 'FAIL'}: target >= 20x)")
    return 0 if ratio >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
