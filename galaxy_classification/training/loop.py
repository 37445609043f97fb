"""The training loop: batches of a plan's galaxies, Keras' fit, the members of an ensemble.

:func:`training_images` decides where the epochs read their uint8 frames from
(the data as it is, or a model-sized cache made once); :class:`TrainingBatches`
turns rows of a plan into Keras data sets; :func:`train_members` trains one
network (or K for an ensemble) on the same split, with early stopping where the
recipe asks for it, and returns them as float32 networks ready to calibrate
and save.
"""

import dataclasses
import functools
import sys
import time

import numpy as np

from galaxy_classification.data import datasets, image_stores
from galaxy_classification.errors import note
from galaxy_classification.model.presets import Preset
from galaxy_classification.training.plan import TrainingPlan

PREFETCH_WORKERS = 2


def keras_verbosity(progress: bool) -> int:
    """Keras' ``verbose``: a bar on a terminal, one line per epoch in a log, nothing without progress."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2


def training_images(galaxies, cache_dir, crops, size, progress=True):
    """Where training reads its uint8 images from, and how it turns them into model input.

    Frames that need no crop or resize (the seed preset at the frames' own
    size) are read as they are. Otherwise every frame is cropped and resized
    once, with the saved model's own preprocessing, into a uint8 cache in
    ``cache_dir`` (reused by later runs on the same data and settings), and
    epochs only scale it to [0, 1]. The frames a model does badly on (grey,
    blank, too small, not square) are said in one note: all of them when the
    cache is built, a sample when the frames are read as they are.
    """
    from galaxy_classification.data import input_pipeline

    audit = image_stores.FrameAudit()
    if galaxies.form == "directory" and np.all(crops >= 1.0) and galaxies.native_image_size() == size:
        images = galaxies.images
        input_pipeline.audit_sample(images, crops, size, audit)
    else:
        images = input_pipeline.preprocessed_cache(galaxies, cache_dir, crops, size, progress=progress, audit=audit)
    if audit.summary():
        note(f"training data {galaxies.path}: {audit.summary()}; the model learns less from such frames")
    return images, datasets.scale_images


@dataclasses.dataclass
class TrainingBatches:
    """Makes Keras data sets of a plan's galaxies: ``batches(rows)`` for
    prediction, ``batches(rows, training=True)`` shuffled, augmented and
    weighted by class as the recipe says."""

    images: object
    prepare: object
    labels: np.ndarray
    settings: Preset
    augment: object = None
    class_weights: dict = None

    @classmethod
    def for_plan(cls, plan: TrainingPlan, images, prepare) -> "TrainingBatches":
        from galaxy_classification.model import preprocessing

        settings, labels = plan.settings, plan.labels
        augment = (functools.partial(preprocessing.augment_batch, **dataclasses.asdict(settings.augment))
                   if settings.augment else None)
        class_weights = datasets.balanced_class_weights(labels[plan.train_rows]) if settings.class_weights else None
        return cls(images, prepare, labels, settings, augment, class_weights)

    def __call__(self, rows, training=False, with_labels=True, max_batches=None, shuffle_seed=0):
        from galaxy_classification.data import input_pipeline

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


def train_members(plan: TrainingPlan, batches: TrainingBatches, distribution, ensemble=1, seed=None,
                  steps_per_epoch=None, progress=True) -> TrainedMembers:
    """Train ``ensemble`` networks from seeds seed, seed+1, ... on the same split.

    Parameters
    ----------
    plan : TrainingPlan
        The galaxies, split and recipe.
    batches : TrainingBatches
        The plan's batch maker.
    distribution : galaxy_classification.training.distribute.Distribution
        One device, every GPU, or several workers.
    ensemble : int
        How many networks to train.
    seed : int, optional
        The first member's seed (None: not reproducible).
    steps_per_epoch : int, optional
        At most this many batches an epoch.
    progress : bool
        Show Keras' progress.

    Returns
    -------
    TrainedMembers
        float32 networks outside any strategy, their optimisers dropped.
    """
    import keras

    from galaxy_classification.model import architectures

    settings, size = plan.settings, plan.settings.image_size
    view = plan.field.petro_radii * settings.crop_fraction
    run = TrainedMembers([], [], [], 0.0, 0)
    for member in range(ensemble):
        member_seed = None if seed is None else seed + member
        number = member if ensemble > 1 else None  # names in an ensemble must differ
        seed_everything(keras, member_seed)
        training_batches = batches(plan.train_rows, training=True, max_batches=steps_per_epoch,
                                   shuffle_seed=(member_seed or 0))
        run.steps_per_epoch = len(training_batches)
        with distribution.scope():
            core_model = (starting_network(plan.start.path, settings) if plan.start
                          else architectures.build_core_model(settings, size, number))
            architectures.compile_model(core_model, settings, run.steps_per_epoch)
        which = f" (ensemble member {member + 1} of {ensemble})" if ensemble > 1 else ""
        which += f", finetuning {plan.start.name}" if plan.start else ""
        print(f"preset {settings.name}{which}: {core_model.count_params():,} parameters, {size}px images "
              f"(centre {settings.crop_fraction:.3g} of the frame: {view:.3g} x petroR90 across), "
              f"{settings.epochs} epochs of batch {settings.batch_size} in {settings.precision}; "
              f"train {len(plan.train_rows)}, validation {len(plan.validation_rows)}, test {len(plan.test_rows)}")
        if distribution.is_multi_worker:
            from galaxy_classification.training import multi_worker

            history, seconds = multi_worker.fit(distribution, core_model, plan, batches, member_seed or 0, progress)
            epoch_kept = len(history["loss"])  # no early stopping across workers: the last epoch
        else:
            history, seconds, epoch_kept = fit(core_model, training_batches, batches(plan.validation_rows),
                                               settings, progress)
        if distribution.is_multi_worker or settings.precision != "float32":
            core_model = plain_copy(core_model, settings, size, number, cloned=plan.start is not None)
        run.seconds += seconds
        run.histories.append(history)
        run.epochs_kept.append(epoch_kept)
        architectures.forget_optimizer(core_model)
        run.networks.append(core_model)
    return run


def fit(core_model, training_batches, validation_batches, settings: Preset, progress=True):
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
        callbacks=[stopper] if stopper else [], shuffle=False, verbose=keras_verbosity(progress),
    ).history  # the History callback holds the model; keep only the numbers
    seconds = time.perf_counter() - started
    restored = stopper is not None and stopper.best_weights is not None
    return history, seconds, stopper.best_epoch + 1 if restored else len(history["loss"])


def plain_copy(network, settings: Preset, size: int, member=None, cloned=False):
    """The trained network as a float32 one outside any strategy, for calibration,
    prediction and saving (the chief's copy; mixed precision's weights are float32 already).
    ``cloned``: copy the network's own architecture (a finetuned one need not be a preset's)."""
    import keras

    from galaxy_classification.model import architectures

    plain = (keras.models.clone_model(network) if cloned
             else architectures.build_core_model(settings, size, member, precision="float32"))
    plain.set_weights(network.get_weights())
    return plain


def starting_network(path, settings: Preset):
    """A fresh copy of the network saved in ``path`` (each member its own), ready to finetune: with
    ``settings.frozen_batchnorm`` its BatchNorm layers keep their statistics (inference mode)."""
    import keras

    from galaxy_classification.model import architectures
    from galaxy_classification.model import files as model_files

    network = model_files.load_model(path).network
    if settings.frozen_batchnorm:
        for layer in architectures.all_layers(network):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return network


def seed_everything(keras, seed):
    """Make a run repeatable: Python, NumPy and the backend's seeds, and TensorFlow's deterministic ops."""
    if seed is None:
        return
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
