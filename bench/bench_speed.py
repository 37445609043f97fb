"""Speed of training and prediction, every figure side by side in one run.

Every rate counts the images actually processed (a Keras callback adds up the
batch sizes it saw; prediction counts the rows it returned) and prints that
count beside the rate. The figures:

1. training, network only: each preset's compiled model fitting in-memory
   float32 arrays of its input size, against the whole pipeline (uint8 frames
   from the memory-mapped 512² directory -> preprocessed cache -> batches ->
   the same model); the ratio is the pipeline's efficiency;
2. one epoch on a 512² ``sdss_query``-style directory, marginal cost per
   galaxy between two sample sizes (modern: building its cache plus one epoch;
   seed: one epoch), and the modern / seed ratio;
3. whole default recipes per galaxy (cache once, then the recipe's planned
   epochs at the measured per-epoch cost; early stopping can only make the
   modern recipe cheaper), and the ratio;
4. prediction: the shipped model on 423² JPEG files (the shared Galaxy Zoo 1
   frames when present, synthetic JPEGs of that size otherwise), steady state
   after one warm-up pass, against the network alone on in-memory arrays;
5. TensorFlow's oneDNN kernels off and on (``TF_ENABLE_ONEDNN_OPTS`` 0 and 1,
   which the package sets by default): the modern network's training rate
   alone in float32, in two child processes, one after the other;
6. the modern network's training precision, float32 (both presets' default,
   which figures 1-3 use) against ``--precision mixed_bfloat16`` (oneDNN on),
   the same way.

    .venv/bin/python bench/bench_speed.py                    # about 5 minutes
    .venv/bin/python bench/bench_speed.py --sizes 200 800 --predict-images 400

Bench data is written under bench/output/speed (git-ignored) and removed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
OUTPUT = ROOT / "bench" / "output" / "speed"
GZ1_DIR = ROOT.parent / "shared" / "data" / "gz1"

from bench_data import write_bench_data  # noqa: E402

from galaxy_classification.data import (
    datasets,
    image_stores,
    input_pipeline,  # noqa: E402
)
from galaxy_classification.data.field_of_view import FieldOfView  # noqa: E402
from galaxy_classification.model import architectures, preprocessing, presets
from galaxy_classification.model import files as model_files
from galaxy_classification.training import loop, plan  # noqa: E402


def counting_callback():
    import keras

    class CountImages(keras.callbacks.Callback):
        """Adds up the images of every training batch that ran."""

        def __init__(self):
            super().__init__()
            self.images = 0
            self.batch_size = None

        def on_train_batch_end(self, batch, logs=None):
            self.images += self.batch_size

    return CountImages()


def compiled_model(settings, steps):
    import keras

    keras.utils.set_random_seed(0)
    model = architectures.build_core_model(settings, settings.image_size)
    return architectures.compile_model(model, settings, steps)


def network_only_rate(settings, n_images):
    """Images/s of the compiled model's training steps on batches already in
    memory (float32 at its input size): no reading, no preprocessing, no queue."""
    size, batch = settings.image_size, settings.batch_size
    n_batches = max(2, n_images // batch)
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(batch) % 2]
    model = compiled_model(settings, n_batches)
    model.train_on_batch(x, y)  # tracing
    started = time.perf_counter()
    for _ in range(n_batches):
        model.train_on_batch(x, y)
    return n_batches * batch / (time.perf_counter() - started), n_batches * batch


def pipeline_epoch(galaxies, settings, cache_dir, warm_up=True):
    """(seconds to prepare the frames, seconds for one epoch, images trained) through the trainer's pipeline."""
    import dataclasses

    crops = plan.crop_policy(settings).crops(galaxies)
    started = time.perf_counter()
    images, prepare = loop.training_images(galaxies, cache_dir / "cache", crops, settings.image_size, False)
    prepared = time.perf_counter() - started
    rows = np.arange(len(galaxies))
    augment = settings.augment

    def batches(max_batches=None):
        return input_pipeline.as_keras_dataset(input_pipeline.GalaxyBatches(
            images, rows, galaxies.labels, settings.batch_size, prepare, shuffle=True,
            augment=(lambda batch, rng: preprocessing.augment_batch(batch, rng, **dataclasses.asdict(augment)))
            if augment else None,
            class_weights=datasets.balanced_class_weights(galaxies.labels) if settings.class_weights else None,
            max_batches=max_batches), workers=loop.PREFETCH_WORKERS, image_side=settings.image_size)

    epoch = batches()
    model = compiled_model(settings, len(epoch))
    if warm_up:
        model.fit(batches(2), epochs=1, verbose=0)  # tracing, first allocations
    counter = counting_callback()
    counter.batch_size = settings.batch_size
    started = time.perf_counter()
    model.fit(epoch, epochs=1, verbose=0, callbacks=[counter])
    seconds = time.perf_counter() - started
    trained = min(counter.images, len(galaxies))  # the last batch is smaller
    if trained != len(galaxies):
        raise SystemExit(f"one epoch trained {trained} images, expected {len(galaxies)}")
    return prepared, seconds, trained


def training_figures(data_dirs, sizes):
    figures = {}
    for preset_name in ("seed", "modern"):
        per_size = {}
        for size in sizes:
            galaxies = datasets.open_training_data(data_dirs[size])
            settings = plan.resolve_settings(
                preset_name, galaxies, plan.TrainingOptions(batch_size=presets.PRESETS[preset_name].batch_size))
            shutil.rmtree(OUTPUT / "cache", ignore_errors=True)
            per_size[size] = pipeline_epoch(galaxies, settings, OUTPUT)
            prepared, seconds, trained = per_size[size]
            print(f"  {preset_name:6s} ({settings.precision}) {size:5d} galaxies: "
                  f"prepare {prepared:6.1f} s, one epoch {seconds:6.1f} s "
                  f"({trained} images, {trained / seconds:7.1f} images/s)", flush=True)
        network_rate, counted = network_only_rate(settings, min(sizes[-1], 2000 if preset_name == "modern" else 200))
        small, large = sizes
        prepare_per_galaxy = (per_size[large][0] - per_size[small][0]) / (large - small)
        epoch_per_galaxy = (per_size[large][1] - per_size[small][1]) / (large - small)
        pipeline_rate = per_size[large][2] / per_size[large][1]
        figures[preset_name] = {"prepare": prepare_per_galaxy, "epoch": epoch_per_galaxy,
                                "epochs": settings.epochs, "network_rate": network_rate,
                                "pipeline_rate": pipeline_rate, "network_counted": counted}
        print(f"  {preset_name:6s} network only: {network_rate:7.1f} images/s ({counted} images); pipeline "
              f"{pipeline_rate:7.1f} images/s at {large} galaxies -> pipeline / network = "
              f"{pipeline_rate / network_rate:.2f}", flush=True)
    return figures


def prediction_figures(n_images):
    """(pipeline images/s, count, network-only images/s, count, source) for the shipped model."""
    classifier = model_files.load_classifier()
    if (GZ1_DIR / "labels.csv").is_file():
        import pandas as pd

        files = [GZ1_DIR / name for name in pd.read_csv(GZ1_DIR / "labels.csv")["file"].head(n_images)]
        source = f"{len(files)} shared Galaxy Zoo 1 JPEGs (423 px)"
    else:
        files = write_jpegs(OUTPUT / "jpegs", n_images)
        source = f"{len(files)} synthetic 423 px JPEGs"
    images = image_stores.ImageFiles(files)
    crop = FieldOfView(10.152).crop_for(classifier.view_petro_radii)
    model_files.predict_probabilities(classifier, images, crop, progress=False)  # warm-up: tracing, file cache
    started = time.perf_counter()
    probabilities = model_files.predict_probabilities(classifier, images, crop, progress=False)
    pipeline_rate = len(probabilities) / (time.perf_counter() - started)

    batch = model_files.prediction_batch_size(classifier.image_size)
    x = np.random.default_rng(0).random((len(files) // batch * batch, classifier.image_size,
                                         classifier.image_size, 3), dtype=np.float32)
    classifier.network.predict_on_batch(x[:batch])
    started = time.perf_counter()
    counted = sum(len(classifier.network.predict_on_batch(x[start:start + batch]))
                  for start in range(0, len(x), batch))
    network_rate = counted / (time.perf_counter() - started)
    return pipeline_rate, len(probabilities), network_rate, counted, source


def network_only_in_a_child(n_images, onednn, precision_name):
    """(modern network-only training images/s, images) in a fresh process with
    ``TF_ENABLE_ONEDNN_OPTS=onednn``, training in ``precision_name``."""
    environment = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}
    child = subprocess.run([sys.executable, __file__, "--network-only", str(n_images), "--precision", precision_name],
                           env=environment, capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def kernel_figures(n_images):
    """{name: (images/s, images)}: oneDNN off and on in float32, then mixed bfloat16 with oneDNN on."""
    return {"oneDNN off": network_only_in_a_child(n_images, "0", "float32"),
            "oneDNN on": network_only_in_a_child(n_images, "1", "float32"),
            "mixed_bfloat16": network_only_in_a_child(n_images, "1", "mixed_bfloat16")}


def print_network_only(n_images, precision_name):
    """The child of :func:`network_only_in_a_child`: one JSON line."""
    import dataclasses

    from galaxy_classification.model import presets

    rate, counted = network_only_rate(dataclasses.replace(presets.MODERN_PRESET, precision=precision_name), n_images)
    print(json.dumps([rate, counted]))


def write_jpegs(directory, n_images):
    from PIL import Image

    from trainer_helpers import galaxy_images

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(galaxy_images(np.arange(min(n_images, 64)) % 2, size=423)):
        paths.append(directory / f"{index}.jpeg")
        Image.fromarray(image).save(paths[-1], quality=90)
    return [paths[index % len(paths)] for index in range(n_images)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[400, 1600], metavar=("SMALL", "LARGE"),
                        help="the two sample sizes of the marginal per-galaxy cost (default 400 1600)")
    parser.add_argument("--predict-images", type=int, default=800, help="JPEG files for the prediction figure")
    parser.add_argument("--network-only", type=int, metavar="N", help=argparse.SUPPRESS)  # network_only_in_a_child's child
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)  # with --network-only
    arguments = parser.parse_args()
    if arguments.network_only:
        return print_network_only(arguments.network_only, arguments.precision)
    sys.path.insert(0, str(ROOT / "tests"))
    sizes = sorted(arguments.sizes)
    try:
        data_dirs = {size: write_bench_data(OUTPUT / f"data-{size}", size) for size in sizes}
        print(f"512x512x3 uint8 directories of {sizes[0]} and {sizes[1]} galaxies; {os.cpu_count()} CPUs")
        print("\ntraining (one epoch each, through the trainer's pipeline):")
        figures = training_figures(data_dirs, sizes)
        print("\nprediction:")
        pipeline_rate, count, network_rate, counted, source = prediction_figures(arguments.predict_images)
        kernels = kernel_figures(1280)
    finally:
        shutil.rmtree(OUTPUT, ignore_errors=True)
    seed, modern = figures["seed"], figures["modern"]
    print(f"  predict on {source}: {pipeline_rate:7.1f} galaxies/s ({count} classified); network alone "
          f"{network_rate:7.1f} images/s ({counted}); pipeline / network = {pipeline_rate / network_rate:.2f}")
    epoch_ratio = seed["epoch"] / (modern["prepare"] + modern["epoch"])
    seed_recipe = seed["prepare"] + seed["epochs"] * seed["epoch"]
    modern_recipe = modern["prepare"] + modern["epochs"] * modern["epoch"]
    print("\nper galaxy, marginal between the two sizes:")
    print(f"  one epoch, 512² directory: seed {1000 * seed['epoch']:.2f} ms, modern "
          f"{1000 * (modern['prepare'] + modern['epoch']):.2f} ms (cache {1000 * modern['prepare']:.2f} + epoch "
          f"{1000 * modern['epoch']:.2f}) -> modern is {epoch_ratio:.1f}x cheaper")
    print(f"  whole default recipes: seed {seed['epochs']} epochs {1000 * seed_recipe:.0f} ms, modern "
          f"{modern['epochs']} epochs {1000 * modern_recipe:.1f} ms -> {seed_recipe / modern_recipe:.1f}x cheaper")
    print(f"  training pipeline / network only: seed {seed['pipeline_rate'] / seed['network_rate']:.2f}, "
          f"modern {modern['pipeline_rate'] / modern['network_rate']:.2f}")
    (off, off_count), (on, on_count) = kernels["oneDNN off"], kernels["oneDNN on"]
    bfloat16, bfloat16_count = kernels["mixed_bfloat16"]
    print(f"  modern network training, float32, oneDNN off {off:.1f} images/s ({off_count}), on {on:.1f} images/s "
          f"({on_count}) -> {on / off:.2f}x")
    print(f"  modern network training, oneDNN on, float32 {on:.1f} images/s ({on_count}), mixed bfloat16 "
          f"{bfloat16:.1f} images/s ({bfloat16_count}) -> {bfloat16 / on:.2f}x")


if __name__ == "__main__":
    main()
