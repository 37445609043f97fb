"""Train a convolutional network that tells spiral from elliptical galaxies, judge it, use it.

Run bare, it does what the seed did: read ``data/``, split 70/30
(``random_state=42``), train the seed's network with adam for 15 epochs at batch
size 5 with ``validation_split`` 0.2, print the confusion matrix, plot the
curves and save ``my-galaxy-model.h5`` (plus ``my-galaxy-model.keras``)::

    python quick_cnn_trainer.py
    python quick_cnn_trainer.py --data data --preset modern --out results/run1
    python quick_cnn_trainer.py evaluate --model my-galaxy-model.keras --data data --out results/eval
    python quick_cnn_trainer.py predict --out predictions.csv cutouts/ a.jpg
    python quick_cnn_trainer.py classify my_catalogue.csv --no-login

``python quick_cnn_trainer.py --help`` (and ``COMMAND --help``) lists every
option. This file is the face users know; the work is done by the package
:mod:`galaxy_classification` (its ``__init__`` maps it). TensorFlow is imported
only once the arguments and data have been checked.
"""

import sys

import numpy as np

from galaxy_classification.cli import trainer_main as main
from galaxy_classification.data import datasets
from galaxy_classification.evaluation.evaluate import evaluate
from galaxy_classification.inference.classify import classify
from galaxy_classification.inference.predict import predict
from galaxy_classification.training.run import train

__all__ = ["get_data", "clean_data", "create_cnn", "train", "evaluate", "predict", "classify", "main"]


def get_data(data="data", field_of_view=None):
    """Open the galaxies of ``data`` (a sdss_query directory or a ``file,label`` CSV).

    Returns a :class:`galaxy_classification.data.datasets.GalaxyData`; nothing is
    loaded: ``images, labels = get_data()`` gives a lazy image store (read rows
    with ``images.read(indices)``, uint8) and the int labels; ``.field`` says
    what the frames show. ``field_of_view`` (petroR90 across) overrides it.
    """
    return datasets.open_training_data(data, field_of_view)


def clean_data(images, labels, crop_fraction=1.0, image_size=None):
    """One batch as the network wants it: float32 images in [0, 1] and one-hot labels.

    The seed min-max scaled and one-hot encoded the whole arrays up front; here
    the pipeline calls this for every batch, so no float copy of the data set
    ever exists. ``crop_fraction`` and ``image_size`` crop and resize on the fly.
    """
    images = np.asarray(images)
    if crop_fraction >= 1.0 and (image_size is None or image_size == images.shape[1] == images.shape[2]):
        return datasets.scale_images(images), datasets.one_hot(labels)
    from galaxy_classification.model import preprocessing

    return preprocessing.prepare_images(images, crop_fraction, image_size), datasets.one_hot(labels)


def create_cnn(input_shape=(512, 512, 3)):
    """The seed's network: Conv2D(16, 3×3) → BatchNorm → MaxPool(3) → Dropout(0.25)
    → Flatten → Dense(64) → BatchNorm → Dropout(0.5) → Dense(2, softmax);
    29,594,562 parameters at 512 × 512 × 3."""
    from galaxy_classification.model import architectures

    return architectures.create_seed_cnn(input_shape)


if __name__ == "__main__":
    sys.exit(main())
