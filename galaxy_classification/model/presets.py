"""Training recipes (``quick_cnn_trainer.py --preset``) as frozen dataclasses.

A preset says how much sky its network looks at (:attr:`Preset.view_petro_radii`,
in petroR90 across); training turns that into a crop from the data's recorded
field of view. Nothing here imports Keras, so the trainer reads presets before
the slow import.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Augmentation:
    """Training-only perturbations (:func:`augment_batch`)."""

    dihedral: bool = True
    max_shift: float = 0.0
    brightness: float = 0.0


@dataclass(frozen=True)
class Preset:
    """A training recipe. ``view_petro_radii``: how much sky (petroR90 across)
    the network looks at; None keeps the whole frame. ``image_size`` None: the
    frames' own size. The architecture fields are the modern network's."""

    name: str
    view_petro_radii: float
    image_size: int
    epochs: int
    batch_size: int
    class_weights: bool = False
    augment: Augmentation = None
    early_stopping_patience: int = None
    # early stopping watches only the planned epochs from this fraction on: before it the
    # cosine schedule's learning rate is still high, validation loss swings by 30% from one
    # epoch to the next, and a stop there keeps an undertrained network (models/README.md)
    early_stopping_from: float = 0.5
    min_steps_per_epoch: int = None  # smaller batches on small samples (quick_cnn_trainer.resolve_settings)
    widths: tuple = ()
    convs_per_block: tuple = ()
    dropout: float = 0.0
    learning_rate: float = None
    weight_decay: float = None
    label_smoothing: float = 0.0
    crop_fraction: float = None  # set per run from the data's field (resolve_settings)
    # the arithmetic of training (galaxy_classification.model.precision); saved models are float32 either way
    precision: str = "float32"
    # finetuning: BatchNorm layers keep the starting network's statistics (inference mode) when True
    frozen_batchnorm: bool = False

    def first_epoch_watched(self):
        """The first epoch (0-based) early stopping may stop after or keep the weights of."""
        return int(self.epochs * self.early_stopping_from)


# The seed's recipe: everything but the input size is fixed.
SEED_PRESET = Preset(name="seed", view_petro_radii=None, image_size=None, epochs=15, batch_size=5,
                     learning_rate=1e-3)  # adam's own default, as the seed's optimizer="adam"

# The modern recipe, tuned on the shared Galaxy Zoo 1 cutouts (validation split
# only; see models/README.md): 3.55 x petroR90 across (a 0.35 centre crop of a
# GZ1 frame) at 64 px matched a 0.5 crop at 80 px and is 1.5x cheaper.
MODERN_PRESET = Preset(
    name="modern", view_petro_radii=3.55, image_size=64, epochs=30, batch_size=64,
    class_weights=True, augment=Augmentation(dihedral=True, max_shift=0.03, brightness=0.1),
    early_stopping_patience=8, min_steps_per_epoch=25,
    widths=(16, 32, 64, 128),
    convs_per_block=(1, 2, 2, 2),  # one conv at full resolution keeps it fast on a CPU
    dropout=0.3, learning_rate=2e-3, weight_decay=1e-4, label_smoothing=0.05,
)

# Finetuning a saved network (--init-from) on a few hundred galaxies of the user's own survey: the
# starting model's view and input size (set per run), a learning rate a tenth of training from scratch
# after a short warm-up, BatchNorm kept in inference mode (a few hundred galaxies in small batches
# give noisy statistics; the starting network's are kept), early stopping on validation loss.
FINETUNE_PRESET = Preset(
    name="finetune", view_petro_radii=None, image_size=None, epochs=30, batch_size=32,
    class_weights=True, augment=Augmentation(dihedral=True, max_shift=0.03, brightness=0.1),
    early_stopping_patience=8, early_stopping_from=0.3, min_steps_per_epoch=10,
    learning_rate=2e-4, weight_decay=1e-4, label_smoothing=0.05, frozen_batchnorm=True,
)

PRESETS = {preset.name: preset for preset in (SEED_PRESET, MODERN_PRESET)}
