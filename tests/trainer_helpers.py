"""Small on-disk galaxy data sets for the trainer tests: both --data forms."""

import numpy as np
import pandas as pd
from PIL import Image

from galaxy_classification.data import storage


def galaxy_images(labels, size=48, seed=0):
    """uint8 (n, size, size, 3): ellipticals a round red blob, spirals an elongated
    blue streak at a random angle, on noisy sky. Easy, so one epoch learns something."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2.0
    images = []
    for label in labels:
        sky = rng.normal(20, 6, (size, size, 3))
        if label == 1:
            profile = np.exp(-np.hypot(x, y) / (size * 0.12))
            colour = np.array([230, 160, 110])
        else:
            angle = rng.uniform(0, np.pi)
            along = x * np.cos(angle) + y * np.sin(angle)
            across = -x * np.sin(angle) + y * np.cos(angle)
            profile = np.exp(-np.hypot(along / 2.5, across * 2.0) / (size * 0.06))
            colour = np.array([110, 150, 235])
        images.append(np.clip(sky + profile[..., None] * colour, 0, 255).astype(np.uint8))
    return np.stack(images)


def balanced_labels(n_galaxies, seed=0):
    labels = np.array([0, 1] * (n_galaxies // 2) + [0] * (n_galaxies % 2))
    return np.random.default_rng(seed).permutation(labels)


def write_data_directory(directory, n_galaxies=40, size=48, seed=0):
    """A sdss_query-style directory: galaxy_data.csv, galaxy_images.npy, galaxy_labels.npy."""
    labels = balanced_labels(n_galaxies, seed)
    images = galaxy_images(labels, size, seed)
    catalogue = pd.DataFrame({"objid": [str(1237650000000000000 + i) for i in range(n_galaxies)],
                              "galaxy_type": np.where(labels == 1, "elliptical", "spiral")})
    storage.write_datafiles(directory, catalogue, labels, images=iter(images), image_shape=images.shape[1:])
    return directory, images, labels


def write_image_csv(directory, n_galaxies=30, size=64, seed=0, unlabelled=0, name="labels.csv", field_of_view=None):
    """A Galaxy Zoo-style folder: images/<i>.jpeg (and one .png) plus labels.csv
    with file,label (and field_of_view when given); the first ``unlabelled``
    rows have an empty label."""
    labels = balanced_labels(n_galaxies, seed)
    images = galaxy_images(labels, size, seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    files = []
    for index, image in enumerate(images):
        file = f"images/{index:03d}.{'png' if index == 0 else 'jpeg'}"
        Image.fromarray(image).save(directory / file, quality=95)
        files.append(file)
    label_text = [str(label) for label in labels]
    for row in range(unlabelled):
        label_text[row] = ""
    table = pd.DataFrame({"file": files, "objid": range(n_galaxies), "label": label_text})
    if field_of_view is not None:
        table["field_of_view"] = field_of_view
    table.to_csv(directory / name, index=False)
    return directory / name, images, labels


class FramesOfField:
    """Stands for a data set whose ``count`` frames all show ``petro_radii`` petroR90 across (for the crop policy)."""

    def __init__(self, petro_radii, count=10):
        from galaxy_classification.data.field_of_view import FieldOfView

        self.field, self.row_fields, self.count = FieldOfView(petro_radii), None, count

    def __len__(self):
        return self.count
