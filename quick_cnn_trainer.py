"""Train a convolutional network that tells spiral from elliptical galaxies, judge it, use it.

Train (the seed's behaviour when run bare: data/ in, files out in the current directory):

    python quick_cnn_trainer.py
    python quick_cnn_trainer.py --data data --preset modern --out results/run1
    python quick_cnn_trainer.py --data ../shared/data/gz1/labels.csv --preset modern --out results/gz1

Training prints the confusion matrix with class names and a per-class report,
and writes into ``--out``: ``metrics.json``, ``training_curves.png``,
``confusion_matrix.png``, ``roc_curve.png``, ``misclassified.png``,
``my-galaxy-model.keras`` and ``my-galaxy-model.h5``.

Judge a saved model on labelled data, or classify images:

    python quick_cnn_trainer.py evaluate --model my-galaxy-model.keras --data data --out results/eval
    python quick_cnn_trainer.py predict --model my-galaxy-model.h5 --out predictions.csv cutouts/ a.jpg

``--data`` is a directory written by ``sdss_query.py`` or a CSV with columns
``file,label``. Images stream from disk in batches, so memory does not grow
with the number of galaxies. The seed's steps are kept as functions:
:func:`get_data`, :func:`clean_data` and :func:`create_cnn`.
Run ``python quick_cnn_trainer.py --help`` (or ``evaluate --help``,
``predict --help``) for every option. TensorFlow is imported only once the
arguments and data have been checked.
"""

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

import numpy as np

from galaxy_classification import CLASS_NAMES, datasets, image_stores, parameters, presets
from galaxy_classification import precision as precision_module
from galaxy_classification.skyserver import SDSSQueryError
from galaxy_classification.storage import DataFileError

PROJECT_ROOT = Path(__file__).resolve().parent
PRETRAINED_NAME = "sdss-gz1.keras"


def _pretrained_model():
    """The shipped model: models/ of a checkout, or where ``pip install`` put it."""
    checkout = PROJECT_ROOT / "models" / PRETRAINED_NAME
    installed = Path(sys.prefix) / "share" / "galaxy-classification" / "models" / PRETRAINED_NAME
    return checkout if checkout.is_file() or not installed.is_file() else installed


DEFAULT_MODEL = _pretrained_model()
MODEL_STEM = "my-galaxy-model"
COMMANDS = ("train", "evaluate", "predict", "classify", "merge", "ensemble")
PRESET_NAMES = tuple(presets.PRESETS)
PREFETCH_WORKERS = 2
PREPARE_CHUNK = 8  # one thread prepares the next batch while the model trains


class UsageError(ValueError):
    """A command-line value the trainer cannot use."""


# --------------------------------------------------------------------------- the seed's steps


def get_data(data="data", field_of_view=None):
    """Open the galaxies of ``data`` (a sdss_query directory or a ``file,label`` CSV).

    Returns a :class:`galaxy_classification.datasets.GalaxyData`; nothing is
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
    return prepare_images(images, crop_fraction, image_size), datasets.one_hot(labels)


def prepare_images(images, crop_fraction=1.0, image_size=None):
    """uint8 batch -> float32 batch in [0, 1], cropped and resized when asked."""
    if crop_fraction >= 1.0 and (image_size is None or image_size == images.shape[1] == images.shape[2]):
        return datasets.scale_images(images)
    from galaxy_classification import preprocessing

    # a few images at a time: a whole batch of 512² frames as float32 would be 200 MB per batch in flight
    return np.concatenate([
        preprocessing.preprocess_images(images[start:start + PREPARE_CHUNK], crop_fraction, image_size).numpy()
        for start in range(0, len(images), PREPARE_CHUNK)
    ])


def create_cnn(input_shape=(512, 512, 3)):
    """The seed's network: Conv2D(16, 3×3) → BatchNorm → MaxPool(3) → Dropout(0.25)
    → Flatten → Dense(64) → BatchNorm → Dropout(0.5) → Dense(2, softmax);
    29,594,562 parameters at 512 × 512 × 3."""
    from galaxy_classification import architectures

    return architectures.create_seed_cnn(input_shape)


# --------------------------------------------------------------------------- train


def resolve_settings(preset_name, data, epochs=None, batch_size=None, image_size=None, crop=None, n_train=None,
                     precision=None):
    """The preset's recipe with the command-line overrides applied, the crop
    computed from the data's field of view (``crop`` overrides it) and the
    precision settled for this machine (:func:`precision.choose`).

    A preset with ``min_steps_per_epoch`` shrinks its batch (not below 8) on
    small samples so each epoch still takes that many optimiser steps: 180
    training galaxies in batches of 64 would give 3 steps an epoch, too few
    for the network (or BatchNorm's statistics) to settle before early stopping.
    """
    preset = presets.PRESETS[preset_name]
    if crop is not None:
        crop_fraction = crop
    elif preset.view_petro_radii is None:
        crop_fraction = 1.0
    else:
        crop_fraction = float(np.median(data.crops(preset.view_petro_radii)))
    changes = {"crop_fraction": crop_fraction}
    if image_size is not None:
        changes["image_size"] = image_size
    elif preset.image_size is None:
        changes["image_size"] = max(1, round(data.native_image_size() * crop_fraction))
    if epochs is not None:
        changes["epochs"] = epochs
    if batch_size is not None:
        changes["batch_size"] = batch_size
    elif preset.min_steps_per_epoch and n_train:
        changes["batch_size"] = min(preset.batch_size, max(8, n_train // preset.min_steps_per_epoch))
    changes["precision"] = precision_module.choose(precision or preset.precision)
    return dataclasses.replace(preset, **changes)


def training_crops(galaxies, settings, crop=None):
    """Each training frame's centre fraction: the same sky for every galaxy,
    whatever field its frame has (one crop for all with ``--crop``)."""
    if crop is not None or settings.view_petro_radii is None:
        return np.full(len(galaxies), settings.crop_fraction)
    return galaxies.crops(settings.view_petro_radii)


def known_training_field(galaxies, data):
    """The field of the training frames; the seed's cutouts, said once, when nothing records it."""
    from galaxy_classification import field_of_view

    if galaxies.field is None and galaxies.row_fields is None:
        galaxies.field = field_of_view.assume(
            field_of_view.SEED_FIELD, str(data),
            f"no {datasets.FIELD_COLUMN} column, no {field_of_view.DATASET_FILE} beside it")
    if galaxies.field is not None:
        return galaxies.field
    return field_of_view.FieldOfView(float(np.median(galaxies.row_fields)), source="given")


@dataclasses.dataclass
class TrainingPlan:
    """What a training run works on: the galaxies, their field, the seed's split
    (rows of ``galaxies``) and the recipe with its crop for each frame."""

    galaxies: object
    field: object
    train_rows: np.ndarray
    validation_rows: np.ndarray
    test_rows: np.ndarray
    settings: presets.Preset
    crops: np.ndarray


def plan_training(data, preset, epochs=None, batch_size=None, image_size=None, crop=None,
                  test_fraction=datasets.TEST_SIZE, field_of_view=None, min_agreement=None, replicas=1,
                  precision=None):
    """Open ``data``, split it and settle the recipe (:func:`resolve_settings`);
    with R ``replicas`` the global batch and the learning rate are R times the preset's."""
    galaxies = get_data(data, field_of_view)
    skipped = f" ({galaxies.skipped} rows without a label skipped)" if galaxies.skipped else ""
    print(f"{len(galaxies)} galaxies from {data}{skipped}")
    field = known_training_field(galaxies, data)
    kept = _agreeing_galaxies(galaxies, min_agreement)
    train_rows, validation_rows, test_rows = (kept[rows] for rows in
                                              datasets.split_indices(len(kept), test_size=test_fraction))
    settings = resolve_settings(preset, galaxies, epochs, batch_size, image_size, crop, n_train=len(train_rows),
                                precision=precision)
    if replicas > 1:  # each replica takes the preset's batch: scale the rate with the global batch
        settings = dataclasses.replace(settings, batch_size=settings.batch_size * replicas,
                                       learning_rate=settings.learning_rate * replicas)
    return TrainingPlan(galaxies, field, train_rows, validation_rows, test_rows, settings,
                        training_crops(galaxies, settings, crop))


def train(data="data", preset="seed", out=".", epochs=None, batch_size=None, image_size=None, crop=None,
          seed=None, progress=True, steps_per_epoch=None, test_fraction=datasets.TEST_SIZE, field_of_view=None,
          ensemble=1, min_agreement=None, distribute="auto", peer_timeout=600, precision=None):
    """Train on ``data``, report on the held-out 30% and save the model; return the metrics.

    ``steps_per_epoch`` limits each epoch to that many batches of a fresh
    shuffle (quick trials on big data); validation and test still use every
    galaxy. ``field_of_view`` (petroR90 across) states the frames' field when
    the data does not record it. ``ensemble`` K trains K networks from seeds
    seed, seed+1, ... on the same split and saves their average as one model.
    ``min_agreement`` keeps only galaxies whose Galaxy Zoo volunteers agreed at
    least that much (the data must carry p_el_debiased / p_cs_debiased).
    ``distribute`` is auto, none, mirrored or multi-worker
    (:mod:`galaxy_classification.distribute`): with R replicas the global batch
    and the learning rate are R times the preset's; under multi-worker only the
    chief writes (the others return None), and a worker that hears nothing from
    its peers for ``peer_timeout`` seconds stops with a message. ``precision``
    (default: the preset's) is auto, float32 or mixed_bfloat16
    (:mod:`galaxy_classification.precision`); the saved model is float32 either way.
    """
    from galaxy_classification import distribute as distribution_module

    try:
        if precision is not None:  # a wrong name is said before any data is read
            precision_module.check(precision)
        # first: a multi-worker strategy must exist before TensorFlow's runtime starts
        distribution = distribution_module.choose(distribute, peer_timeout)
    except ValueError as error:
        raise UsageError(str(error)) from None
    plan = plan_training(data, preset, epochs, batch_size, image_size, crop, test_fraction, field_of_view,
                         min_agreement, distribution.replicas, precision)
    if distribution.replicas > 1:
        print(f"{distribution.name}: {distribution.replicas} replicas, global batch {plan.settings.batch_size}, "
              f"learning rate {plan.settings.learning_rate:g}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, prepare = _training_images(plan.galaxies, out_dir, plan.crops, plan.settings.image_size, progress)
    batches = TrainingBatches.for_plan(plan, images, prepare)

    run = _train_members(plan, batches, distribution, ensemble, seed, steps_per_epoch, progress)
    if not distribution.is_chief:
        print(f"worker done after {run.seconds:.1f} s of training; the chief writes the model and the report")
        return None
    return _calibrate_save_and_report(plan, run, batches, out_dir, progress, {
        "command": "train", "data": str(data), "preset": preset, "seed": seed, "ensemble": ensemble,
        "min_agreement": min_agreement, "distribution": distribution.record()})


@dataclasses.dataclass
class TrainingBatches:
    """Makes Keras data sets of a plan's galaxies: ``batches(rows)`` for
    prediction, ``batches(rows, training=True)`` shuffled, augmented and
    weighted by class as the recipe says."""

    images: object
    prepare: object
    labels: np.ndarray
    settings: presets.Preset
    augment: object = None
    class_weights: dict = None

    @classmethod
    def for_plan(cls, plan, images, prepare):
        from galaxy_classification import preprocessing

        settings, labels = plan.settings, plan.galaxies.labels
        augment = (functools.partial(preprocessing.augment_batch, **dataclasses.asdict(settings.augment))
                   if settings.augment else None)
        class_weights = datasets.balanced_class_weights(labels[plan.train_rows]) if settings.class_weights else None
        return cls(images, prepare, labels, settings, augment, class_weights)

    def __call__(self, rows, training=False, with_labels=True, max_batches=None, shuffle_seed=0):
        from galaxy_classification import input_pipeline

        return input_pipeline.as_keras_dataset(input_pipeline.GalaxyBatches(
            self.images, rows, self.labels if with_labels else None, self.settings.batch_size, self.prepare,
            shuffle=training, seed=shuffle_seed, augment=self.augment if training else None,
            class_weights=self.class_weights, max_batches=max_batches,
        ), workers=PREFETCH_WORKERS, image_side=self.settings.image_size)


@dataclasses.dataclass
class TrainedMembers:
    """The networks an ensemble (or a single run) trained, with their histories and
    the epoch (1-based) whose weights each network kept."""

    networks: list
    histories: list
    epochs_kept: list
    seconds: float
    steps_per_epoch: int


def _train_members(plan, batches, distribution, ensemble, seed, steps_per_epoch, progress):
    """Train ``ensemble`` networks from seeds seed, seed+1, ... on the same split."""
    from galaxy_classification import architectures

    import keras

    settings, size = plan.settings, plan.settings.image_size
    view = plan.field.petro_radii * settings.crop_fraction
    multi_worker = distribution.name == "MultiWorkerMirroredStrategy"
    run = TrainedMembers([], [], [], 0.0, 0)
    for member in range(ensemble):
        member_seed = None if seed is None else seed + member
        number = member if ensemble > 1 else None  # names in an ensemble must differ
        _seed_everything(keras, member_seed)
        training_batches = batches(plan.train_rows, training=True, max_batches=steps_per_epoch,
                                   shuffle_seed=(member_seed or 0))
        run.steps_per_epoch = len(training_batches)
        with distribution.scope():
            core_model = architectures.build_core_model(settings, size, number)
            architectures.compile_model(core_model, settings, run.steps_per_epoch)
        which = f" (ensemble member {member + 1} of {ensemble})" if ensemble > 1 else ""
        print(f"preset {settings.name}{which}: {core_model.count_params():,} parameters, {size}px images "
              f"(centre {settings.crop_fraction:.3g} of the frame: {view:.3g} x petroR90 across), "
              f"{settings.epochs} epochs of batch {settings.batch_size} in {settings.precision}; "
              f"train {len(plan.train_rows)}, validation {len(plan.validation_rows)}, test {len(plan.test_rows)}")
        if multi_worker:
            history, seconds = _fit_multi_worker(distribution, core_model, plan, batches, member_seed, progress)
            epoch_kept = len(history["loss"])  # no early stopping across workers: the last epoch
        else:
            history, seconds, epoch_kept = _fit(core_model, training_batches, batches(plan.validation_rows),
                                                settings, progress)
        if multi_worker or settings.precision != "float32":
            core_model = _plain_copy(core_model, settings, size, number)
        run.seconds += seconds
        run.histories.append(history)
        run.epochs_kept.append(epoch_kept)
        architectures.forget_optimizer(core_model)
        run.networks.append(core_model)
    return run


def _fit(core_model, training_batches, validation_batches, settings, progress):
    """(history, seconds, epoch kept) of Keras' own fit, keeping the best watched epoch
    when the preset stops early; the epoch kept is 1-based."""
    import keras

    stopper = None
    if settings.early_stopping_patience:
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=settings.early_stopping_patience, restore_best_weights=True,
            start_from_epoch=settings.first_epoch_watched())
    started = time.perf_counter()
    history = core_model.fit(
        training_batches, validation_data=validation_batches, epochs=settings.epochs,
        callbacks=[stopper] if stopper else [], shuffle=False, verbose=_keras_verbosity(progress),
    ).history  # the History callback holds the model; keep only the numbers
    seconds = time.perf_counter() - started
    restored = stopper is not None and stopper.best_weights is not None
    return history, seconds, stopper.best_epoch + 1 if restored else len(history["loss"])


def _calibrate_save_and_report(plan, run, batches, out_dir, progress, record):
    """Fold a temperature fitted on the validation split into the networks,
    save their average, judge it on the test split; return the metrics."""
    from galaxy_classification import architectures, calibration, model_files, reports

    settings, field, test_rows = plan.settings, plan.field, plan.test_rows
    network = run.networks[0] if len(run.networks) == 1 else architectures.average_of(run.networks)
    temperature, calibration_record = _calibrate(run.networks, batches(plan.validation_rows, with_labels=False),
                                                 plan.galaxies.labels[plan.validation_rows], progress)
    p_elliptical = network.predict(batches(test_rows, with_labels=False), verbose=_keras_verbosity(progress))[:, 1]
    model_files.save_classifier_files(network, out_dir / MODEL_STEM, settings.crop_fraction, settings.image_size,
                                      field, temperature)
    agreement = calibration.volunteer_agreement(plan.galaxies.catalogue)
    metrics = reports.write_evaluation_report(
        out_dir, plan.galaxies.labels[test_rows], p_elliptical,
        load_images=lambda positions: batches.images.read(test_rows[positions]),
        history=run.histories[0], epoch_kept=run.epochs_kept[0],
        sources=[plan.galaxies.sources[row] for row in test_rows],
        agreement=None if agreement is None else agreement[test_rows],
        extra={**record, **_training_record(plan, run), "temperature_scaling": calibration_record},
    )
    print(reports.format_metrics(metrics))
    print(f"saved {out_dir / MODEL_STEM}.keras (raw uint8 images of any size) and .h5 (the bare network: "
          f"float32 in [0, 1] at {settings.image_size} px); metrics and pictures in {out_dir}/")
    reports.show_on_screen_if_possible([out_dir / reports.TRAINING_CURVES_FILE])
    return metrics


def _training_record(plan, run):
    """metrics.json's account of the recipe, the split and the training time."""
    settings, field = plan.settings, plan.field
    epochs_run = [len(history["loss"]) for history in run.histories]
    images_trained = min(len(plan.train_rows), run.steps_per_epoch * settings.batch_size) * sum(epochs_run)
    return {
        "image_size": settings.image_size, "crop_fraction": round(settings.crop_fraction, 6),
        "field_of_view": {"data": field.to_json(), "data_source": field.source,
                          "model_view_petro_radii": round(field.petro_radii * settings.crop_fraction, 4)},
        "batch_size": settings.batch_size, "precision": settings.precision,
        "epochs_planned": settings.epochs, "epochs_run": epochs_run[0] if len(epochs_run) == 1 else epochs_run,
        "epoch_kept": run.epochs_kept[0] if len(run.epochs_kept) == 1 else run.epochs_kept,
        "split": {"train": len(plan.train_rows), "validation": len(plan.validation_rows),
                  "test": len(plan.test_rows)},
        "training_seconds": round(run.seconds, 1),
        "steps_per_epoch": run.steps_per_epoch,
        "training_images_per_second": round(images_trained / run.seconds, 2),
    }


def _fit_multi_worker(distribution, core_model, plan, batches, seed, progress):
    from galaxy_classification import multi_worker

    try:
        return multi_worker.fit(distribution, core_model, batches.images, plan.train_rows, plan.validation_rows,
                                plan.galaxies.labels, plan.settings, batches.prepare, batches.augment,
                                batches.class_weights, seed or 0, progress)
    except multi_worker.PeerLost as error:
        raise UsageError(str(error)) from None


def _plain_copy(network, settings, size, member):
    """The trained network as a float32 one outside any strategy, for calibration,
    prediction and saving (the chief's copy; mixed precision's weights are float32 already)."""
    from galaxy_classification import architectures

    plain = architectures.build_core_model(settings, size, member, precision="float32")
    plain.set_weights(network.get_weights())
    return plain


def _seed_everything(keras, seed):
    if seed is None:
        return
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _agreeing_galaxies(galaxies, min_agreement):
    """Indices of the galaxies to use: all, or those with volunteer agreement >= ``min_agreement``."""
    from galaxy_classification import calibration

    everyone = np.arange(len(galaxies))
    if min_agreement is None:
        return everyone
    agreement = calibration.volunteer_agreement(galaxies.catalogue)
    if agreement is None:
        raise UsageError(f"--min-agreement needs Galaxy Zoo vote fractions ({', '.join(calibration.FRACTION_COLUMNS)}) "
                         "in the data's catalogue: fetch it with sdss_query.py --labels galaxyzoo")
    kept = everyone[agreement >= min_agreement]
    print(f"{len(kept)} of {len(galaxies)} galaxies have volunteer agreement >= {min_agreement:g}")
    if len(kept) < 4:
        raise UsageError(f"--min-agreement {min_agreement:g} leaves {len(kept)} galaxies, too few to train on")
    return kept


def _calibrate(members, validation_batches, validation_labels, progress):
    """Fit one temperature on the validation split (for an ensemble: applied to
    every member, then averaged) and fold it into the members; returns (T, a
    record of validation log loss and ECE before and after)."""
    from galaxy_classification import architectures, calibration

    member_probabilities = np.stack([member.predict(validation_batches, verbose=_keras_verbosity(progress))
                                     for member in members])
    if len(validation_labels) < calibration.MIN_CALIBRATION_GALAXIES:
        print(f"temperature scaling skipped: {len(validation_labels)} validation galaxies are too few to fit it "
              f"(at least {calibration.MIN_CALIBRATION_GALAXIES}); the probabilities are left as trained")
        return 1.0, {"temperature": 1.0, "fitted_on": None,
                     "note": f"{len(validation_labels)} validation galaxies, fewer than "
                             f"{calibration.MIN_CALIBRATION_GALAXIES}: not fitted"}
    temperature = calibration.fit_temperature(member_probabilities, validation_labels)
    before = calibration.calibration_report(validation_labels, member_probabilities.mean(axis=0)[:, 1])
    after = calibration.calibration_report(
        validation_labels, calibration.tempered_mean(member_probabilities, temperature)[:, 1])
    for member in members:
        architectures.fold_temperature(member, temperature)
    print(f"temperature scaling on the validation split: T = {temperature:.3f}, log loss "
          f"{before['log_loss']:.4f} -> {after['log_loss']:.4f}, ECE {before['expected_calibration_error']:.4f} "
          f"-> {after['expected_calibration_error']:.4f}")
    record = {"temperature": round(temperature, 5), "fitted_on": "validation split",
              "validation_log_loss": [round(before["log_loss"], 5), round(after["log_loss"], 5)],
              "validation_ece": [round(before["expected_calibration_error"], 5),
                                 round(after["expected_calibration_error"], 5)]}
    return temperature, record


def _training_images(galaxies, out_dir, crops, size, progress):
    """Where training reads its uint8 images from, and how it turns them into model input.

    Frames that need no crop or resize (the seed preset at the frames' own
    size) are read as they are. Otherwise every frame is cropped and resized
    once, with the saved model's own preprocessing, into a uint8 cache under
    ``out/cache/`` (reused by later runs on the same data and settings), and
    epochs only scale it to [0, 1].
    """
    from galaxy_classification import input_pipeline

    if galaxies.form == "directory" and np.all(crops >= 1.0) and galaxies.native_image_size() == size:
        return galaxies.images, datasets.scale_images
    cache = input_pipeline.preprocessed_cache(galaxies, out_dir / "cache", crops, size, progress=progress)
    return cache, datasets.scale_images


def _keras_verbosity(progress):
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2  # a bar on a terminal, one line per epoch in a log


# --------------------------------------------------------------------------- evaluate and predict


def _load_model(model_path):
    """The saved classifier (:class:`galaxy_classification.model_files.Classifier`)."""
    from galaxy_classification import model_files

    if model_path is None:
        if not DEFAULT_MODEL.is_file():
            raise UsageError(
                f"--model not given and the pretrained model {DEFAULT_MODEL} is not there; "
                "train one (it saves my-galaxy-model.keras) and pass --model")
        model_path = DEFAULT_MODEL
    try:
        return model_files.load_model(model_path)
    except ValueError as error:
        raise UsageError(str(error)) from None


def combine_models(model_paths, out="ensemble.keras"):
    """Save the average of the saved models ``model_paths`` as ``out`` (.keras) and its .h5."""
    from galaxy_classification import model_files

    out = Path(out)
    if out.suffix.lower() != ".keras":
        raise UsageError(f"--out {out}: expected a .keras file name (the .h5 is written beside it)")
    classifiers = [_load_model(path) for path in model_paths]
    try:
        h5_path, keras_path = model_files.combine(classifiers, out.with_suffix(""))
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"saved {keras_path} (the mean of {len(classifiers)} models' probabilities) and {h5_path}")
    return keras_path


def input_crops(classifier, galaxies, crop=None):
    """One crop per galaxy that shows the sky ``classifier`` was trained on;
    ``crop`` (``--crop``) replaces them all."""
    if crop is not None:
        return np.full(len(galaxies), crop)
    if classifier.view_petro_radii is not None and galaxies.row_fields is not None:
        return galaxies.crops(classifier.view_petro_radii)
    return np.full(len(galaxies), classifier.crop_for(galaxies.field, str(galaxies.path)))


def evaluate(model, data, out=".", progress=True, crop=None, field_of_view=None, predictions="predictions.csv"):
    """Judge a saved model on every galaxy of labelled ``data``; write the report
    and each galaxy's probabilities into ``out/predictions`` (.csv, .ecsv, .fits, .vot)."""
    import pandas as pd

    from galaxy_classification import calibration, model_files, reports, tables

    _table_format(predictions)
    classifier = _load_model(model)
    galaxies = get_data(data, field_of_view)
    crops = input_crops(classifier, galaxies, crop)
    probabilities = model_files.predict_probabilities(classifier, galaxies.images, crops, progress=progress)
    metrics = reports.write_evaluation_report(
        out, galaxies.labels, probabilities[:, 1],
        load_images=functools.partial(_images_for_display, galaxies.images),
        sources=galaxies.sources, agreement=calibration.volunteer_agreement(galaxies.catalogue),
        extra={"command": "evaluate", "model": str(model or DEFAULT_MODEL), "data": str(data),
               "skipped_unlabelled": galaxies.skipped,
               "field_of_view": {"model": classifier.field_record(),
                                 "data": galaxies.field.to_json() if galaxies.field else None,
                                 "crop_fraction": round(float(np.median(crops)), 6)}},
    )
    objids, release = _catalogue_objids(galaxies), _data_release_of(galaxies)
    per_galaxy = _with_sky_links(pd.DataFrame({
        "source": galaxies.sources, "label": galaxies.labels,
        "p_spiral": probabilities[:, 0], "p_elliptical": probabilities[:, 1]}), objids, release,
        np.arange(len(galaxies)))
    tables.write_table(per_galaxy, Path(out) / predictions,
                       meta={"model": classifier.name, "model_sha256": classifier.sha256})
    suspects = reports.suspect_labels(galaxies.labels, probabilities[:, 1], galaxies.sources, objids, release)
    tables.write_table(suspects, Path(out) / reports.SUSPECT_LABELS_FILE)
    print(reports.format_metrics(metrics))
    print(f"metrics, pictures, {predictions} and {reports.SUSPECT_LABELS_FILE} (the {len(suspects)} galaxies it "
          f"most confidently disagrees with) in {out}/")
    return metrics


def _images_for_display(images, rows):
    """uint8 images of the given rows at one common size (files may differ in size)."""
    if isinstance(images, image_stores.NpyImages):
        return images.read(rows)
    from PIL import Image

    pictures = [images.read_one(row) for row in rows]
    side = pictures[0].shape[0]
    return np.stack([
        picture if picture.shape[:2] == (side, side)
        else np.asarray(Image.fromarray(picture).resize((side, side), Image.BILINEAR))
        for picture in pictures
    ])


def predict(paths, model=None, out="predictions.csv", progress=True, crop=None, field_of_view=None,
            min_confidence=None, shard=None):
    """Classify the galaxies in ``paths``; write and return a table with columns
    source, p_spiral, p_elliptical, predicted (spiral, elliptical, or uncertain
    below ``min_confidence``), crop (the centre fraction the model looked at),
    and objid with its SkyServer link when the input has a catalogue. ``out``
    ends in .csv, .ecsv, .fits or .vot. ``shard`` (k, N) classifies only the
    k-th of N disjoint parts of the rows into ``OUT.part-k-of-N``, with each
    row's place in the whole (see :mod:`galaxy_classification.parts`)."""
    import pandas as pd

    from galaxy_classification import parts, tables

    _table_format(out)
    inputs = [datasets.open_prediction_inputs(path, field_of_view) for path in paths]
    classifier = _load_model(model)
    offsets = np.cumsum([0] + [len(galaxies) for galaxies in inputs])
    wanted = parts.part_rows(int(offsets[-1]), shard) if shard else np.arange(offsets[-1])
    pieces = []
    for galaxies, offset in zip(inputs, offsets[:-1]):
        rows = wanted[(wanted >= offset) & (wanted < offset + len(galaxies))] - offset
        if len(rows) == 0:
            continue
        piece = _predict_rows(classifier, galaxies, rows, crop, min_confidence, progress)
        if shard:
            piece[parts.ROW_COLUMN] = rows + offset
        pieces.append(piece)
    table = parts.with_status_filled(pd.concat(pieces, ignore_index=True)) if pieces else pd.DataFrame(
        columns=["source", "p_spiral", "p_elliptical", "predicted", "crop", parts.ROW_COLUMN])
    target = parts.part_path(out, shard) if shard else Path(out)
    tables.write_table(table, target, meta={"model": classifier.name, "model_sha256": classifier.sha256})
    _print_prediction_summary(table, target, (*CLASS_NAMES, "uncertain") if min_confidence is not None else CLASS_NAMES)
    return table


def _predict_rows(classifier, galaxies, rows, crop, min_confidence, progress):
    """predict's table for ``rows`` of one input; an unreadable file's row has status 'failed'."""
    import pandas as pd

    from galaxy_classification import classify as classify_module
    from galaxy_classification import model_files

    crops = input_crops(classifier, galaxies, crop)[rows]
    images = galaxies.images if len(rows) == len(galaxies) else image_stores.subset_images(galaxies.images, rows)
    if isinstance(images, image_stores.ImageFiles):
        images = image_stores.ForgivingImageFiles(images.paths)
    probabilities = model_files.predict_probabilities(classifier, images, crops, progress=progress)
    problems = getattr(images, "problems", {})
    probabilities[list(problems)] = np.nan
    piece = pd.DataFrame({
        "source": [galaxies.sources[row] for row in rows],
        "p_spiral": probabilities[:, 0],
        "p_elliptical": probabilities[:, 1],
        "predicted": classify_module.predicted_classes(probabilities, min_confidence),
        "crop": np.round(crops, 4),
    })
    if problems:
        piece["status"] = np.where(np.isnan(probabilities[:, 0]), "failed", "ok")
        piece["reason"] = [problems.get(index, "") for index in range(len(rows))]
    _note_small_frames(images, crops, classifier.image_size)
    _note_grey_frames(images)
    return _with_sky_links(piece, _catalogue_objids(galaxies), _data_release_of(galaxies), rows)


def _print_prediction_summary(table, target, names):
    counts = table["predicted"].value_counts()
    failed = table[table["status"] == "failed"] if "status" in table.columns else None
    print(f"wrote {target}: {len(table)} galaxies, " + ", ".join(f"{counts.get(name, 0)} {name}" for name in names)
          + (f", {len(failed)} not classified (status 'failed', with the reason)" if failed is not None else ""))
    if failed is not None:
        for source, reason in zip(failed["source"][:5], failed["reason"][:5]):
            print(f"  {source}: {reason}", file=sys.stderr)
        if len(failed) > 5:
            print(f"  ... and {len(failed) - 5} more", file=sys.stderr)


def _note_small_frames(images, crops, image_size):
    """Say which inputs the model saw upsampled more than 2× (a thumbnail, a
    too-tight cutout): their classes are guesses, though a class is given."""
    small = getattr(images, "small", {})
    if not small:
        return
    index, (height, width) = next(iter(sorted(small.items())))
    kept = max(1, round(min(height, width) * float(np.broadcast_to(crops, (len(images),))[index])))
    print(f"note: {len(small)} image(s) too small for the model, e.g. {images.paths[index].name}: {width}x{height} "
          f"px, whose crop keeps {kept} px across where the model looks at {image_size}; their probabilities "
          f"mean little", file=sys.stderr)


def _note_grey_frames(images):
    """Say which inputs have no colour: SDSS gri colour carries part of the answer
    (grey copies of the held-out Galaxy Zoo galaxies: 86.5% for the shipped model
    against 91.0% in colour, models/README.md)."""
    grey = sorted(getattr(images, "grey", ()))
    if grey:
        print(f"note: {len(grey)} image(s) without colour (grey), e.g. {images.paths[grey[0]].name}: the model was "
              "trained on gri colour cutouts and is less accurate on grey ones", file=sys.stderr)


def _with_sky_links(table, objids, release, rows):
    """``table`` (a line for each of ``rows``) with each galaxy's objid and its
    SkyServer explore link in ``release``; unchanged when ``objids`` is None
    (:func:`_catalogue_objids`: the data's catalogue has none)."""
    from galaxy_classification import tables

    if objids is None:
        return table
    return tables.with_explore_links(table.assign(objid=[objids[row] for row in rows]), release)


def _data_release_of(galaxies):
    release = galaxies.field.data_release if galaxies.field else None
    return release if release and release.upper().startswith("DR") else "DR15"


def _catalogue_objids(galaxies):
    catalogue = galaxies.catalogue
    if catalogue is None or "objid" not in catalogue.columns or len(catalogue) != len(galaxies):
        return None
    return [str(objid) for objid in catalogue["objid"]]


def _table_format(out):
    from galaxy_classification import tables

    try:
        return tables.table_format(out)
    except ValueError as error:
        raise UsageError(f"--out {error}") from None


def merge(out):
    """Join the ``OUT.part-k-of-N`` tables of a sharded run into ``out``; return the table."""
    from galaxy_classification import parts

    try:
        table = parts.merge_parts(out)
    except ValueError as error:
        raise UsageError(f"merge: {error}") from None
    print(f"wrote {out}: {len(table)} rows from its parts")
    return table


def classify(catalogue, model=None, out="classified.csv", login=True, data_release="DR15", workers=8,
             progress=True, min_confidence=None, shard=None):
    """Classify the galaxies of a catalogue (see :mod:`galaxy_classification.classify`);
    write and return the classified table."""
    from galaxy_classification import classify as classify_module

    release = parameters.data_release_name(data_release)
    workers = parameters.positive_integer("workers", workers)
    _table_format(out)
    table = classify_module.read_catalogue(catalogue)  # bad input fails before the model loads
    classify_module.checked_positions(table, catalogue)
    classifier = _load_model(model)
    try:
        return classify_module.classify_catalogue(catalogue, classifier, out, login=login, data_release=release,
                                                  workers=workers, progress=progress, min_confidence=min_confidence,
                                                  shard=shard, table=table)
    except classify_module.CatalogueError as error:
        raise UsageError(str(error)) from None


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad value in one line (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _bounded_int(minimum, maximum=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value
    return parse


def _fraction(minimum, maximum, meaning="a fraction"):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be {meaning} between {minimum:g} and {maximum:g}, got {value:g}")
        return value
    return parse


_crop_fraction = _fraction(0.05, 1.0, "a fraction of the frame")
_test_fraction = _fraction(0.05, 0.5)
_confidence = _fraction(0.5, 1.0, "a probability")
_field_of_view = _fraction(0.1, 1000.0, "petroR90 across")


CROP_OVERRIDE_HELP = (
    "central fraction of each image the model looks at, overriding the crop computed from the frames' "
    "field of view and the model's (default: computed)")
SHARD_HELP = ("process only the k-th of N disjoint parts of the rows (k from 0) into OUT.part-k-of-N; "
              "under a Slurm job array the default comes from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT; "
              "join the parts with 'quick_cnn_trainer.py merge OUT'")
FIELD_OF_VIEW_HELP = (
    "how much sky the frames show, in petroR90 across, when the data does not record it (sdss_query's "
    "dataset.json and a CSV's field_of_view column do): e.g. 5.12 for sdss_query's defaults (512 px at "
    "0.01 x petroR90_g), 10.152 for Galaxy Zoo 1 frames (423 px at 0.024 x petroR90_r)")


def build_parser(command="train"):
    prog = "quick_cnn_trainer.py" if command == "train" else f"quick_cnn_trainer.py {command}"
    if command == "evaluate":
        parser = _Parser(prog=prog, description="Judge a saved model on labelled galaxies; write metrics and pictures.")
        parser.add_argument("--model", required=True, help="a .keras or .h5 model saved by the trainer")
        parser.add_argument("--data", required=True, help="a sdss_query data directory or a file,label CSV")
        parser.add_argument("--out", default=".", help="directory for metrics.json and pictures (default .)")
        parser.add_argument("--crop", type=_crop_fraction, help=CROP_OVERRIDE_HELP)
        parser.add_argument("--field-of-view", type=_field_of_view, help=FIELD_OF_VIEW_HELP)
        parser.add_argument("--predictions", default="predictions.csv",
                            help="per-galaxy table written into --out; .csv, .ecsv, .fits or .vot (default "
                                 "predictions.csv)")
        return parser
    if command == "predict":
        parser = _Parser(prog=prog, description="Classify galaxy images with a saved model.")
        parser.add_argument("paths", nargs="+", metavar="PATH",
                            help="image files, a directory of images, a CSV with a 'file' column, or a galaxy_images.npy")
        parser.add_argument("--model", default=None,
                            help=f"a .keras or .h5 model (default: the shipped {PRETRAINED_NAME})")
        parser.add_argument("--out", default="predictions.csv",
                            help="output table: .csv, .ecsv, .fits or .vot (default predictions.csv)")
        parser.add_argument("--crop", type=_crop_fraction, help=CROP_OVERRIDE_HELP)
        parser.add_argument("--field-of-view", type=_field_of_view, help=FIELD_OF_VIEW_HELP)
        parser.add_argument("--min-confidence", type=_confidence,
                            help="call a galaxy 'uncertain' when its larger probability is below this")
        parser.add_argument("--shard", type=_shard, metavar="k/N", help=SHARD_HELP)
        return parser
    if command == "ensemble":
        parser = _Parser(prog=prog, description="Average saved models (trained with other seeds, or on other "
                                                "machines) into one model that plain Keras loads.")
        parser.add_argument("models", nargs="+", metavar="MODEL", help="two or more .keras / .h5 models that take "
                                                                         "the same input")
        parser.add_argument("--out", default="ensemble.keras",
                            help="the combined model; a .h5 of the bare networks is written beside it "
                                 "(default ensemble.keras)")
        return parser
    if command == "merge":
        parser = _Parser(prog=prog, description="Join the OUT.part-k-of-N tables of a sharded predict or classify "
                                                "into OUT, refusing missing or duplicated rows.")
        parser.add_argument("out", metavar="OUT", help="the table the parts were written for, e.g. predictions.csv")
        return parser
    if command == "classify":
        parser = _Parser(prog=prog, description="Classify a catalogue of galaxies (ra, dec [, objid, petroR90_r]): "
                                                "radii looked up in SDSS, cutouts fetched at the model's field of "
                                                "view, a classified catalogue written.")
        parser.add_argument("catalogue", metavar="CATALOGUE",
                            help="CSV, ECSV, FITS or VOTable with ra and dec in degrees; optional objid, "
                                 "petroR90_r / petroR90_g (arcsec), label")
        parser.add_argument("--model", default=None,
                            help=f"a .keras or .h5 model (default: the shipped {PRETRAINED_NAME})")
        parser.add_argument("--out", default="classified.csv",
                            help="output table: .csv, .ecsv, .fits or .vot (default classified.csv); cutouts "
                                 "are cached in OUT_cutouts/")
        parser.add_argument("--no-login", action="store_true",
                            help="look radii up with the SkyServer SQL search, no SciServer account")
        parser.add_argument("--data-release", type=_data_release, default="DR15", help="SDSS data release (default DR15)")
        parser.add_argument("--workers", type=_bounded_int(1, 64), default=8, help="concurrent cutout downloads (default 8)")
        parser.add_argument("--min-confidence", type=_confidence,
                            help="call a galaxy 'uncertain' when its larger probability is below this")
        parser.add_argument("--shard", type=_shard, metavar="k/N", help=SHARD_HELP)
        return parser
    parser = _Parser(
        prog=prog,
        description="Train a CNN to tell spiral (0) from elliptical (1) galaxies, report on a held-out 30%, "
                    "save my-galaxy-model.h5 and .keras.",
        epilog="other commands (each with --help): evaluate, predict, classify, merge, ensemble",
    )
    add = parser.add_argument
    add("--data", default="data", help="a sdss_query data directory or a CSV with columns file,label (default data/)")
    add("--preset", choices=PRESET_NAMES, default="seed",
        help="seed: the original network (default); modern: small, fast, augmented, for galaxies")
    add("--epochs", type=_bounded_int(1), help="training epochs (preset: seed 15, modern 30 with early stopping)")
    add("--batch-size", type=_bounded_int(1), help="images per batch (preset: seed 5, modern 64)")
    add("--image-size", type=_bounded_int(parameters.MIN_IMAGE_SIZE, parameters.MAX_IMAGE_SIZE),
        help="network input side in pixels (preset: seed the images' own size, modern 64)")
    add("--crop", type=_crop_fraction,
        help="keep this central fraction of each frame (default: computed from the data's field of view: the "
             "seed preset keeps the whole frame, the modern one 3.55 x petroR90 across, e.g. 0.69 of an "
             "sdss_query frame, 0.35 of a Galaxy Zoo 1 frame)")
    add("--field-of-view", type=_field_of_view, help=FIELD_OF_VIEW_HELP)
    add("--distribute", choices=("auto", "none", "mirrored", "multi-worker"), default="auto",
        help="auto (default): several workers when TF_CONFIG is set (or Slurm runs several tasks), every GPU "
             "with MirroredStrategy when there are several, else one device; or name one")
    add("--peer-timeout", type=_bounded_int(1), default=600, metavar="SECONDS",
        help="multi-worker: give up when the other workers have not answered for this long (default 600)")
    add("--ensemble", type=_bounded_int(1, 20), default=1, metavar="K",
        help="train K networks (seeds seed, seed+1, ...) and save their average as one model (default 1)")
    add("--min-agreement", type=_fraction(0.5, 1.0, "a vote fraction"), metavar="A",
        help="train only on galaxies whose Galaxy Zoo volunteers agreed at least this much (needs "
             "p_el_debiased / p_cs_debiased in the data, as sdss_query.py --labels galaxyzoo writes)")
    add("--precision", choices=precision_module.CHOICES, default=None,
        help="the arithmetic of training (default float32): mixed_bfloat16 trains 1.1-1.2x faster on a CPU with "
             "native bfloat16 (AVX512_BF16 or AMX) and ranks galaxies slightly worse; auto picks it where the CPU "
             "has it, else float32; the saved model is float32 either way")
    add("--out", default=".", help="directory for the model, metrics and pictures (default .)")
    add("--seed", type=_bounded_int(0), help="random seed: the same seed gives the same result")
    add("--steps-per-epoch", type=_bounded_int(1),
        help="at most this many batches per epoch (quick trials on big data; default: all)")
    add("--test-fraction", type=_test_fraction, default=datasets.TEST_SIZE,
        help="fraction of the galaxies held out for the final test (default 0.3, the seed's 70/30 split; "
             "smaller when the model is judged on a separate set, e.g. with evaluate)")
    return parser


def main(argv=None):
    from galaxy_classification import quiet

    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    parser = build_parser(command)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up log lines (hidden unless TF_CPP_MIN_LOG_LEVEL is 0 or 1)")
    arguments = parser.parse_args(argv)
    quiet.show_logs(arguments.verbose)
    try:
        if command == "train":
            train(arguments.data, arguments.preset, arguments.out, arguments.epochs, arguments.batch_size,
                  arguments.image_size, arguments.crop, arguments.seed, steps_per_epoch=arguments.steps_per_epoch,
                  test_fraction=arguments.test_fraction, field_of_view=arguments.field_of_view,
                  ensemble=arguments.ensemble, min_agreement=arguments.min_agreement,
                  distribute=arguments.distribute, peer_timeout=arguments.peer_timeout,
                  precision=arguments.precision)
        elif command == "evaluate":
            evaluate(arguments.model, arguments.data, arguments.out, crop=arguments.crop,
                     field_of_view=arguments.field_of_view, predictions=arguments.predictions)
        elif command == "predict":
            predict(arguments.paths, arguments.model, arguments.out, crop=arguments.crop,
                    field_of_view=arguments.field_of_view, min_confidence=arguments.min_confidence,
                    shard=_shard_or_environment(arguments.shard))
        elif command == "merge":
            merge(arguments.out)
        elif command == "ensemble":
            combine_models(arguments.models, arguments.out)
        else:
            classify(arguments.catalogue, arguments.model, arguments.out, login=not arguments.no_login,
                     data_release=arguments.data_release, workers=arguments.workers,
                     min_confidence=arguments.min_confidence, shard=_shard_or_environment(arguments.shard))
    except SDSSQueryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except DataFileError as error:
        message = str(error)
        parser.error(message if message.startswith("--") else f"{_data_flag(command)}: {message}")
    except UsageError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _data_flag(command):
    return {"predict": "PATH", "classify": "CATALOGUE"}.get(command, "--data")


def _shard(text):
    from galaxy_classification import parts

    try:
        return parts.parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _shard_or_environment(shard):
    from galaxy_classification import parts

    if shard is not None:
        return shard
    try:
        return parts.shard_from_environment()
    except ValueError as error:
        raise UsageError(f"SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT: {error}") from None


def _data_release(text):
    try:
        return parameters.data_release_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())
