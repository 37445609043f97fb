"""Shared plumbing behind the two scripts users run, ``sdss_query.py`` and
``quick_cnn_trainer.py``.

Modules (one job each):

- ``parameters``  validation of the sample parameters, before any I/O
- ``config``      service URLs and timeouts, overridable by environment variables
- ``catalogue``   SQL building, parsing service responses, label rules
- ``skyserver``   HTTP: login, SQL search, CasJobs, cutout fetch (no files)
- ``cutouts``     concurrent, retrying, cached download of many cutouts
- ``sdss_sample`` the SDSS route of sdss_query: query, labels, cutouts, files
- ``synthetic``   the offline SDSS-like sky used by the demo and the tests
- ``storage``     atomic writes, the three data files, reading ``--data``
- ``field_of_view`` how much sky a frame or a network sees, in petroR90 across
- ``image_stores``  frames on disk (.npy, image files), read a batch at a time
- ``datasets``      opening a ``--data`` set (images, labels, catalogue) and the split
- ``input_pipeline`` the model-sized uint8 cache, training batches, prediction batches
- ``presets``       training recipes (frozen dataclasses)
- ``preprocessing`` crop, resize, augmentation, the saved preprocessing layer
- ``architectures`` the networks, optimisers, ensembles, temperature folding
- ``model_files``   saving and loading models, the Classifier, prediction
- ``calibration``, ``reports``, ``tables``, ``classify``, ``parts``, ``distribute``,
  ``multi_worker``: probabilities, reports, output tables, classifying catalogues,
  sharded runs, several devices or machines

Nothing here imports TensorFlow at import time.
"""

import os

# TensorFlow turns its oneDNN kernels on by itself only on some x86 CPUs; on
# this project's 2-core AMD EPYC machine asking for them trains the modern
# network 1.3-1.75x faster (two runs of bench/bench_speed.py, 2026-12-02). Read when TensorFlow is first
# imported; a user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

CLASS_NAMES = ("spiral", "elliptical")  # label 0, label 1
SPIRAL, ELLIPTICAL = 0, 1
UNLABELLED = -1  # a catalogue row neither label rule claims
PRETRAINED_MODEL_NAME = "sdss-gz1.keras"  # the shipped model, in models/
