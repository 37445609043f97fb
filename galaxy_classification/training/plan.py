"""What a training run works on: the galaxies, their field, the seed's split and the recipe.

:func:`plan_training` opens ``--data``, settles what its frames show, keeps the
galaxies a ``--min-agreement`` asks for, splits them as the seed did and applies
the command line's overrides to the preset once (:func:`resolve_settings`). The
result, a :class:`TrainingPlan`, is what the loop, distribution, calibration and
the report take. Nothing here imports TensorFlow.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification import CLASS_NAMES
from galaxy_classification.data import datasets, field_of_view
from galaxy_classification.data import label_corrections as label_corrections_module
from galaxy_classification.data.field_of_view import CropPolicy, FieldOfView
from galaxy_classification.errors import DataFileError, UsageError, note
from galaxy_classification.model import precision as precision_module
from galaxy_classification.model import presets
from galaxy_classification.model.presets import Preset


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """The command line's overrides of a preset; None keeps the preset's value."""

    epochs: int = None
    batch_size: int = None
    image_size: int = None
    crop: float = None
    precision: str = None


@dataclasses.dataclass(frozen=True)
class StartingModel:
    """A saved model a run finetunes (``--init-from``): where it is, what it is, what it sees."""

    path: Path
    name: str
    sha256: str
    view_petro_radii: float
    image_size: int

    def record(self) -> dict:
        return {"model": self.name, "path": str(self.path), "sha256": self.sha256,
                "view_petro_radii": self.view_petro_radii, "image_size": self.image_size}


PRETRAINED_WORD = "pretrained"  # --init-from pretrained: the shipped model


def starting_model(init_from) -> StartingModel:
    """The model ``--init-from`` names (a path, or ``pretrained``), checked to be one a run can start from."""
    from galaxy_classification.model import files as model_files

    path = model_files.pretrained_model_path() if str(init_from) == PRETRAINED_WORD else Path(init_from)
    classifier = model_files.load_model(path)
    if classifier.network.name.startswith(f"{presets.SEED_PRESET.name}_cnn"):
        raise UsageError(f"--init-from {path}: a seed-preset network (29 million weights behind a Flatten, one "
                         "input size) is not finetuned; start from a modern-preset model such as --init-from "
                         "pretrained")
    if classifier.view_petro_radii is None:
        raise UsageError(f"--init-from {path}: the model records no field of view (a seed-preset model, or one "
                         "saved before fields were recorded), so the crop of your frames cannot follow from it; "
                         "start from a modern-preset model such as --init-from pretrained")
    return StartingModel(path, classifier.name, classifier.sha256, classifier.view_petro_radii,
                         classifier.image_size)


def finetuning_recipe(start: StartingModel, options: TrainingOptions) -> Preset:
    """The finetuning preset with the starting model's view and input size; options that would change
    what the network sees are refused."""
    if options.image_size is not None and options.image_size != start.image_size:
        raise UsageError(f"--image-size {options.image_size}: a finetuned network keeps the input size of "
                         f"--init-from {start.name} ({start.image_size} px)")
    if options.crop is not None:
        raise UsageError(f"--crop: with --init-from the crop follows from {start.name}'s field of view "
                         f"({start.view_petro_radii:g} x petroR90 across) and each frame's own")
    if options.precision not in (None, "float32", "auto"):
        raise UsageError(f"--precision {options.precision}: finetuning runs in float32, the arithmetic of the "
                         "saved network")
    return dataclasses.replace(presets.FINETUNE_PRESET, view_petro_radii=start.view_petro_radii,
                               image_size=start.image_size)


@dataclasses.dataclass
class TrainingPlan:
    """A training run's galaxies (a ``GalaxyData``), their field, the seed's split
    (rows of ``galaxies``), the recipe with the crop of each frame, and the
    saved model it starts from (None: random weights)."""

    galaxies: object
    field: FieldOfView
    train_rows: np.ndarray
    validation_rows: np.ndarray
    test_rows: np.ndarray
    settings: Preset
    crops: np.ndarray
    start: StartingModel = None
    corrections: dict = None  # what --label-corrections changed, for metrics.json

    @property
    def labels(self) -> np.ndarray:
        return self.galaxies.labels


def crop_policy(preset: Preset, crop: float = None) -> CropPolicy:
    """How a preset's network is shown its training frames (``crop``: ``--crop``)."""
    return CropPolicy(preset.view_petro_radii, 1.0, crop, f"the {preset.name} preset")


def resolve_settings(preset, data, options: TrainingOptions = TrainingOptions(), n_train: int = None,
                     crops: np.ndarray = None) -> Preset:
    """The preset's recipe with ``options`` applied, its crop the median of the
    frames' crops (:class:`CropPolicy`) and the precision settled for this
    machine (:func:`precision.choose`).

    A preset with ``min_steps_per_epoch`` shrinks its batch (not below 8) on
    small samples so each epoch still takes that many optimiser steps: 180
    training galaxies in batches of 64 would give 3 steps an epoch, too few
    for the network (or BatchNorm's statistics) to settle before early stopping.
    """
    preset = presets.PRESETS[preset] if isinstance(preset, str) else preset
    if crops is None:
        crops = crop_policy(preset, options.crop).crops(data, what=str(getattr(data, "path", "data")))
    changes = {"crop_fraction": float(np.median(crops))}
    if options.image_size is not None:
        changes["image_size"] = options.image_size
    elif preset.image_size is None:
        changes["image_size"] = max(1, round(data.native_image_size() * changes["crop_fraction"]))
    if options.epochs is not None:
        changes["epochs"] = options.epochs
    if options.batch_size is not None:
        changes["batch_size"] = options.batch_size
    elif preset.min_steps_per_epoch and n_train:
        changes["batch_size"] = min(preset.batch_size, max(8, n_train // preset.min_steps_per_epoch))
    # a finetuned network keeps the float32 layers it was saved with
    changes["precision"] = ("float32" if preset.name == presets.FINETUNE_PRESET.name
                            else precision_module.choose(options.precision or preset.precision))
    return dataclasses.replace(preset, **changes)


def known_training_field(galaxies, data) -> FieldOfView:
    """The field of the training frames; the seed's cutouts, said once, when nothing records it."""
    if galaxies.field is None and galaxies.row_fields is None:
        galaxies.field = field_of_view.assume(
            field_of_view.SEED_FIELD, str(data),
            f"no {datasets.FIELD_COLUMN} column, no {field_of_view.DATASET_FILE} beside it")
    if galaxies.field is not None:
        return galaxies.field
    return FieldOfView(float(np.median(galaxies.row_fields)), source="given")


def plan_training(data, preset: str, options: TrainingOptions = TrainingOptions(),
                  test_fraction: float = datasets.TEST_SIZE, field_of_view: float = None,
                  min_agreement: float = None, replicas: int = 1, init_from=None,
                  label_corrections=None) -> TrainingPlan:
    """Open ``data``, split it and settle the recipe.

    Parameters
    ----------
    data : str or Path
        A ``sdss_query`` directory or a ``file,label`` CSV.
    preset : str
        A name of :data:`presets.PRESETS`.
    options : TrainingOptions
        The command line's overrides.
    test_fraction : float
        The share of galaxies held out for the final test (the seed's 0.3).
    field_of_view : float, optional
        petroR90 across, when the data does not record it.
    min_agreement : float, optional
        Keep only galaxies whose Galaxy Zoo volunteers agreed at least this much.
    replicas : int
        Devices training at once: the global batch and the learning rate are that many times the preset's.
    init_from : str or Path, optional
        A saved model (or ``pretrained``) to finetune: its view and input size, the finetuning recipe.
    label_corrections : str or Path, optional
        A ``label_corrections.csv`` (an evaluate gallery's): labels changed, galaxies left out.

    Returns
    -------
    TrainingPlan
    """
    galaxies = datasets.open_training_data(data, field_of_view)  # bad data is said before Keras starts
    start = starting_model(init_from) if init_from is not None else None
    recipe = finetuning_recipe(start, options) if start else presets.PRESETS[preset]
    skipped = f" ({galaxies.skipped} rows without a label skipped)" if galaxies.skipped else ""
    print(f"{len(galaxies)} galaxies from {data}{skipped}")
    field = known_training_field(galaxies, data)
    kept, corrections = agreeing_galaxies(galaxies, min_agreement), None
    if label_corrections is not None:
        galaxies, corrected, corrections = label_corrections_module.apply_corrections(galaxies, label_corrections)
        kept = np.intersect1d(kept, corrected)
    check_labels(galaxies, kept, data)
    train_rows, validation_rows, test_rows = (kept[rows] for rows in
                                              datasets.split_indices(len(kept), test_size=test_fraction))
    check_both_classes(galaxies.labels[train_rows], f"{data}: the training split")
    crops = crop_policy(recipe, options.crop).crops(galaxies, what=str(Path(data)))
    settings = resolve_settings(recipe, galaxies, options, n_train=len(train_rows), crops=crops)
    if replicas > 1:  # each replica takes the preset's batch: scale the rate with the global batch
        settings = dataclasses.replace(settings, batch_size=settings.batch_size * replicas,
                                       learning_rate=settings.learning_rate * replicas)
    return TrainingPlan(galaxies, field, train_rows, validation_rows, test_rows, settings, crops, start,
                        corrections)


def check_labels(galaxies, rows, data) -> None:
    """Refuse, with the counts, a training set that cannot teach two classes: one class only, or the
    same image listed under both labels."""
    check_both_classes(galaxies.labels[rows], f"{data}")
    sources = pd.Series([str(galaxies.sources[row]) for row in rows])
    labels = pd.Series(galaxies.labels[rows])
    per_source = labels.groupby(sources.to_numpy()).nunique()
    conflicting = per_source[per_source > 1]
    if len(conflicting):
        raise DataFileError(f"{data}: {len(conflicting)} image(s) listed under both labels, e.g. {conflicting.index[0]}; "
                            "each galaxy needs one label (remove or correct the duplicates)")
    repeated = int(sources.duplicated().sum())
    if repeated:
        note(f"{data}: {repeated} row(s) list an image already listed, with the same label; it counts more than once")


def check_both_classes(labels, what) -> None:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    if counts.min() == 0:
        found = ", ".join(f"{count} {name}" for count, name in zip(counts, CLASS_NAMES))
        raise DataFileError(f"{what} holds {found}: training needs galaxies of both classes")


def agreeing_galaxies(galaxies, min_agreement: float = None) -> np.ndarray:
    """Indices of the galaxies to use: all, or those with volunteer agreement >= ``min_agreement``."""
    from galaxy_classification.evaluation import metrics

    everyone = np.arange(len(galaxies))
    if min_agreement is None:
        return everyone
    agreement = metrics.volunteer_agreement(galaxies.catalogue)
    if agreement is None:
        raise UsageError(f"--min-agreement needs Galaxy Zoo vote fractions ({', '.join(metrics.FRACTION_COLUMNS)}) "
                         "in the data's catalogue: fetch it with sdss_query.py --labels galaxyzoo")
    kept = everyone[agreement >= min_agreement]
    print(f"{len(kept)} of {len(galaxies)} galaxies have volunteer agreement >= {min_agreement:g}")
    if len(kept) < 4:
        raise UsageError(f"--min-agreement {min_agreement:g} leaves {len(kept)} galaxies, too few to train on")
    return kept
