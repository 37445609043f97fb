"""The networks that tell spirals from ellipticals: presets, preprocessing, saving.

Two presets (``quick_cnn_trainer.py --preset``):

- ``seed``: the seed's network, layer for layer (:func:`create_seed_cnn`), on
  the full image at its native size, adam, 15 epochs at batch size 5. At 512²
  it has 29,594,562 parameters, almost all in the Dense layer after a
  462,400-wide Flatten.
- ``modern``: built for a 2-core CPU and for galaxies (:func:`build_modern_cnn`
  with :data:`MODERN_PRESET`): centre crop, downsample to 64 px, four
  Conv-BatchNorm-ReLU blocks ending in global average pooling (~0.29 M
  parameters), augmentation by the eight flips/90° rotations, small shifts and
  brightness (galaxies have no up or down), class weights, AdamW with warm-up and
  cosine decay, label smoothing, early stopping on validation loss over the
  second half of the schedule with the best weights of it restored.

Field of view: a preset says how much sky its network looks at, in petroR90
across (:attr:`Preset.view_petro_radii`; the modern one 3.55, the seed the whole
frame). Training computes its crop from the data's recorded field
(:mod:`field_of_view`): 3.55 / 5.12 = 0.69 of an ``sdss_query`` frame, 3.55 /
10.15 = 0.35 of a Galaxy Zoo 1 frame. ``--crop`` overrides it.

The two saved files take different inputs:

- ``.keras``: the self-preprocessing classifier. A :class:`GalaxyPreprocessing`
  layer takes raw uint8 RGB of any size ``(None, None, 3)``, keeps the centre
  crop it was trained with, resizes (bilinear, antialiased) and scales to
  [0, 1]; it also records the field the network was trained on. ``predict``
  reads that record and crops each input to the same sky (:class:`Classifier`).
- ``.h5``: the seed's contract. The bare network in plain Keras layers, which
  ``keras.models.load_model`` opens with nothing of this project imported, and
  which takes what the seed fed it: float32 in [0, 1] at the trained size
  (``clean_data``). Its field of view is kept in the file's HDF5 attributes.

The training pipeline and the saved model share :func:`preprocess_images`.

Importing this module imports Keras; the trainer imports it only when needed.

Where each part lives (one module, one job): :mod:`~galaxy_classification.presets`
(recipes), :mod:`~galaxy_classification.preprocessing` (crop, resize,
augmentation, the saved preprocessing layer),
:mod:`~galaxy_classification.architectures` (networks, optimisers, ensembles,
temperature) and :mod:`~galaxy_classification.model_files` (saving, loading, the
:class:`Classifier`, prediction). This module gathers their public names for
notebooks and scripts::

    from galaxy_classification import models
    classifier = models.load_model("models/sdss-gz1.keras")
"""

from galaxy_classification.architectures import (  # noqa: F401
    SEED_INPUT_SHAPE, average_of, build_core_model, build_modern_cnn, compile_model, create_seed_cnn,
    fold_temperature, forget_optimizer, softmax_layers,
)
from galaxy_classification.model_files import (  # noqa: F401
    FIELD_ATTRIBUTE, Classifier, load_model, predict_probabilities, prediction_batch_size, save_classifier_files,
    save_model, wrap_for_saving,
)
from galaxy_classification.preprocessing import (  # noqa: F401
    GalaxyPreprocessing, augment_batch, preprocess_images, preprocess_to_uint8,
)
from galaxy_classification.presets import MODERN_PRESET, PRESETS, SEED_PRESET, Augmentation, Preset  # noqa: F401
