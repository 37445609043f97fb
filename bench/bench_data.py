"""Fast, disposable 512² galaxy data sets for the trainer benches (not for science).

Each image is uniform sky noise plus one of a few precomputed blobs (round and
red for ellipticals, elongated and blue for spirals), made in vectorised chunks
and streamed into a memory-mapped ``galaxy_images.npy`` by
``storage.write_datafiles``, so even 10,000 galaxies (7.9 GB) take well under a
minute and little memory.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from galaxy_classification.data import storage  # noqa: E402
from galaxy_classification.data.field_of_view import FieldOfView  # noqa: E402

CHUNK = 100


def _blob_templates(size, n_templates=8):
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2.0
    templates = {0: [], 1: []}
    for index in range(n_templates):
        scale = size * (0.05 + 0.02 * index)
        round_blob = np.exp(-np.hypot(x, y) / scale)[..., None] * np.array([200, 150, 110])
        angle = np.pi * index / n_templates
        along, across = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        disc = np.exp(-np.hypot(along / 2.0, across * 2.0) / scale)[..., None] * np.array([110, 150, 200])
        templates[1].append(round_blob.astype(np.uint8))
        templates[0].append(disc.astype(np.uint8))
    return templates


def write_bench_data(directory, n_galaxies, size=512, seed=0):
    """Write galaxy_data.csv / galaxy_images.npy / galaxy_labels.npy; return the directory."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_galaxies)
    templates = _blob_templates(size)

    def images():
        for start in range(0, n_galaxies, CHUNK):
            chunk_labels = labels[start:start + CHUNK]
            chunk = rng.integers(0, 40, (len(chunk_labels), size, size, 3), dtype=np.uint8)
            for image, label in zip(chunk, chunk_labels):
                image += templates[label][rng.integers(len(templates[label]))]  # <= 39 + 200: no overflow
            yield from chunk

    catalogue = pd.DataFrame({"objid": np.arange(n_galaxies).astype(str), "label": labels})
    storage.write_datafiles(directory, catalogue, labels, images=images(), image_shape=(size, size, 3),
                            field=FieldOfView.from_cutouts(0.01, size))  # the seed's cutouts: 0.01 x petroR90
    return Path(directory)
