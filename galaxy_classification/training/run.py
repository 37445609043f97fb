"""A whole training run: plan → fit → calibrate → save → report.

``python quick_cnn_trainer.py`` and ``quick_cnn_trainer.train()`` call
:func:`train`. It writes into ``out``: ``my-galaxy-model.keras`` (raw uint8
images of any size in, calibrated probabilities out), ``my-galaxy-model.h5``
(the seed's contract: float32 in [0, 1] at the trained size), ``metrics.json``
and the report's pictures.
"""

import contextlib
from pathlib import Path

from galaxy_classification.data import datasets, storage
from galaxy_classification.errors import UsageError
from galaxy_classification.model import precision as precision_module
from galaxy_classification.training.loop import (
    TrainedMembers,
    TrainingBatches,
    keras_verbosity,
    train_members,
    training_images,
)
from galaxy_classification.training.plan import TrainingOptions, TrainingPlan, plan_training

MODEL_STEM = "my-galaxy-model"


def train(data="data", preset: str = "seed", out=".", epochs: int = None, batch_size: int = None,
          image_size: int = None, crop: float = None, seed: int = None, progress: bool = True,
          steps_per_epoch: int = None, test_fraction: float = datasets.TEST_SIZE, field_of_view: float = None,
          ensemble: int = 1, min_agreement: float = None, distribute: str = "auto", peer_timeout: float = 600,
          precision: str = None, init_from=None, label_corrections=None):
    """Train on ``data``, report on the held-out test split and save the model; return the metrics.

    Parameters
    ----------
    data : str or Path
        A ``sdss_query`` directory or a ``file,label`` CSV.
    preset : str
        ``seed`` (the original network) or ``modern``.
    out : str or Path
        Directory for the model files, metrics.json and the pictures.
    epochs, batch_size, image_size, crop : optional
        Overrides of the preset's recipe (``crop``: the centre fraction of every frame).
    seed : int, optional
        The same seed gives the same result.
    progress : bool
        Show progress bars.
    steps_per_epoch : int, optional
        At most this many batches of a fresh shuffle an epoch (validation and test use every galaxy).
    test_fraction : float
        Held out for the final test (the seed's 0.3).
    field_of_view : float, optional
        petroR90 across, when the data does not record it.
    ensemble : int
        Train K networks from seeds seed, seed+1, ... on the same split and save their average.
    min_agreement : float, optional
        Keep only galaxies whose Galaxy Zoo volunteers agreed at least this much.
    distribute : str
        ``auto``, ``none``, ``mirrored`` or ``multi-worker``; with R replicas the global batch and the
        learning rate are R times the preset's; under multi-worker only the chief writes.
    peer_timeout : float
        Multi-worker: seconds without word from the peers before a worker stops.
    precision : str, optional
        ``auto``, ``float32`` or ``mixed_bfloat16``; the saved model is float32 either way.
    init_from : str or Path, optional
        Finetune this saved model (``pretrained``: the shipped one) instead of starting from random
        weights: the new model keeps its input size and field of view, with the finetuning recipe.
    label_corrections : str or Path, optional
        Labels corrected by eye (an evaluate gallery's ``label_corrections.csv``) applied to ``data``
        first; metrics.json records the file's checksum and what changed.

    Returns
    -------
    dict or None
        The test split's metrics (as in metrics.json); None on a multi-worker worker that is not the chief.

    Raises
    ------
    galaxy_classification.errors.UsageError
        A value that cannot be used, or data that cannot be read (``DataFileError``).
    """
    from galaxy_classification.evaluation import plots, report
    from galaxy_classification.training import distribute as distribution_module

    if precision is not None:  # a wrong name is said before any data is read
        precision_module.check(precision)
    storage.check_can_write(out, "--out")
    # first: a multi-worker strategy must exist before TensorFlow's runtime starts
    distribution = distribution_module.choose(distribute, peer_timeout)
    if init_from is not None and ensemble > 1:
        raise UsageError("--ensemble with --init-from: finetune K runs with other --seed values and average them "
                         "with 'quick_cnn_trainer.py ensemble'")
    plan = plan_training(data, preset, TrainingOptions(epochs, batch_size, image_size, crop, precision),
                         test_fraction, field_of_view, min_agreement, distribution.replicas, init_from,
                         label_corrections)
    if distribution.replicas > 1:
        print(f"{distribution.name}: {distribution.replicas} replicas, global batch {plan.settings.batch_size}, "
              f"learning rate {plan.settings.learning_rate:g}")
    out_dir = Path(out)
    # only the chief writes the run's files: it alone holds the folder
    with storage.run_lock(out_dir) if distribution.is_chief else contextlib.nullcontext():
        images, prepare = training_images(plan.galaxies, out_dir / "cache", plan.crops, plan.settings.image_size,
                                          progress)
        batches = TrainingBatches.for_plan(plan, images, prepare)
        run = train_members(plan, batches, distribution, ensemble, seed, steps_per_epoch, progress)
        if not distribution.is_chief:
            print(f"worker done after {run.seconds:.1f} s of training; the chief writes the model and the report")
            return None
        with storage.staged_outputs(out_dir) as staging:  # the model files and the report appear together
            metrics = calibrate_save_and_report(plan, run, batches, staging, progress, {
                "command": "train", "data": str(data), "preset": plan.settings.name, "seed": seed,
                "ensemble": ensemble, "min_agreement": min_agreement, "distribution": distribution.record(),
                "init_from": plan.start.record() if plan.start else None, "label_corrections": plan.corrections})
    print(f"saved {out_dir / MODEL_STEM}.keras (raw uint8 images of any size) and .h5 (the bare network: "
          f"float32 in [0, 1] at {plan.settings.image_size} px); metrics and pictures in {out_dir}/")
    plots.show_on_screen_if_possible([out_dir / report.TRAINING_CURVES_FILE])
    return metrics


def calibrate_save_and_report(plan: TrainingPlan, run: TrainedMembers, batches: TrainingBatches, out_dir: Path,
                              progress: bool, record: dict) -> dict:
    """Fold a temperature fitted on the validation split into the networks,
    save their average, judge it on the test split; return the metrics."""
    from galaxy_classification.evaluation import metrics, report
    from galaxy_classification.model import architectures
    from galaxy_classification.model import files as model_files
    from galaxy_classification.training.calibration import calibrate

    settings, test_rows = plan.settings, plan.test_rows
    network = run.networks[0] if len(run.networks) == 1 else architectures.average_of(run.networks)
    temperature, calibration_record = calibrate(run.networks, batches(plan.validation_rows, with_labels=False),
                                                plan.labels[plan.validation_rows], progress)
    p_elliptical = network.predict(batches(test_rows, with_labels=False), verbose=keras_verbosity(progress))[:, 1]
    model_files.save_classifier_files(network, out_dir / MODEL_STEM, settings.crop_fraction, settings.image_size,
                                      plan.field, temperature)
    agreement = metrics.volunteer_agreement(plan.galaxies.catalogue)
    scores = report.write_evaluation_report(
        out_dir, plan.labels[test_rows], p_elliptical,
        load_images=lambda positions: batches.images.read(test_rows[positions]),
        history=run.histories[0], epoch_kept=run.epochs_kept[0],
        sources=[plan.galaxies.sources[row] for row in test_rows],
        agreement=None if agreement is None else agreement[test_rows],
        extra={**record, **training_record(plan, run), "temperature_scaling": calibration_record},
    )
    print(metrics.format_metrics(scores))
    return scores


def training_record(plan: TrainingPlan, run: TrainedMembers) -> dict:
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
