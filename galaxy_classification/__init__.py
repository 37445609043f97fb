"""galaxy-classification: spiral and elliptical galaxies from SDSS, a CNN that tells them apart, your galaxies classified.

The two scripts users run are faces over this package; its folders follow the
path of the data::

    parameters -> SQL -> SDSS -> catalogue + labels -> cutouts -> data files
      -> input pipeline -> network -> fit -> calibrate -> save
      -> predict / classify / evaluate -> one results table -> metrics, pictures

``sdss/``         getting galaxies from SDSS
  ``parameters``    the sample's parameters, checked before any I/O
  ``config``        service URLs, timeouts, retries (arguments, then environment variables)
  ``skyserver``     HTTP: login, SQL search, CasJobs, cutouts; which failures are transient
  ``catalogue``     the query text from the template, replies parsed into exact-id tables
  ``label_rules``   a label rule: its SQL, its columns, its local labeller
  ``cutouts``       many cutouts: concurrent, polite, retried, cached
  ``lookup``        finding a catalogue's galaxies by objid or position
  ``sample``        ``create_datafiles``' SDSS route: query, labels, cutouts, files
``data/``         data on disk and the input pipeline
  ``storage``       atomic writes; the three data files and their shards
  ``field_of_view`` how much sky a frame shows, and the one crop policy (``CropPolicy``)
  ``image_stores``  frames on disk (.npy, image files), read a batch at a time, uint8
  ``datasets``      opening ``--data`` (images, labels, catalogue, field) and the seed's split
  ``input_pipeline`` the model-sized uint8 cache and the batches Keras reads
  ``synthetic``     the offline SDSS-like sky of the demo and the tests
``model/``        the networks and model files
  ``presets``       training recipes (frozen dataclasses)
  ``preprocessing`` crop, resize, augmentation, the saved preprocessing layer
  ``architectures`` the seed's and the modern network, ensembles, the temperature
  ``precision``     float32 or mixed bfloat16 training
  ``files``         saving and loading ``.keras`` / ``.h5``, the ``Classifier``, prediction
``training/``     the plan, the loop, distribution, calibration
  ``plan``          ``TrainingPlan``: galaxies, field, split, recipe and crops
  ``loop``          batches, Keras' fit, the members of an ensemble
  ``distribute``    one device, all GPUs, or several workers
  ``multi_worker``  the custom loop across machines
  ``calibration``   the temperature fitted on the validation split
  ``run``           ``train()``: plan -> fit -> calibrate -> save -> report
``inference/``    using a model
  ``results``       the one per-galaxy results table
  ``predict``       images in, the table out
  ``classify``      a catalogue in, a classified catalogue out
  ``parts``         a prediction run split into parts, and ``merge``
``evaluation/``   judging a model
  ``metrics``       confusion matrix, ROC AUC, calibration, coverage, agreement
  ``plots``         the pictures
  ``report``        metrics.json, the pictures and suspect labels in one call
  ``evaluate``      ``evaluate()``: a saved model on labelled galaxies
``errors``        the project's error types and its note category (``GalaxyNote``)
``cli``           the command lines; the only place errors become one line and an exit code
``tables``        result tables as CSV, ECSV, FITS or VOTable, with units
``quiet``         TensorFlow imported without its start-up chatter

Nothing here imports TensorFlow at import time.
"""

import os

# TensorFlow turns its oneDNN kernels on by itself only on some x86 CPUs; asked
# for, they train the modern network markedly faster on this project's AMD EPYC
# machines (bench/bench_speed.py, bench/RESULTS.md). Read when TensorFlow is
# first imported; a user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

CLASS_NAMES = ("spiral", "elliptical")  # label 0, label 1
SPIRAL, ELLIPTICAL = 0, 1
UNLABELLED = -1  # a catalogue row neither label rule claims
PRETRAINED_MODEL_NAME = "sdss-gz1.keras"  # the shipped model, in models/
