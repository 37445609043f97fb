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
  cosine decay, label smoothing, early stopping on validation loss with the
  best weights restored.

Field of view: the modern network looks at about 3.5 × petroR90 across. Its
crop therefore depends on the data: 0.7 of a data directory's frames
(``sdss_query`` cutouts and the synthetic sky are 512 px at 0.01 × petroR90_g
arcsec/px = 5.12 × petroR90 across), 0.35 of a CSV's image files such as Galaxy
Zoo 1 frames (423 px at 0.024 × petroR90_r = about 10 × petroR90 across).
``--crop`` overrides it; a saved model keeps the crop it was trained with.

Every saved model carries its own preprocessing: a :class:`GalaxyPreprocessing`
layer takes raw uint8 RGB images of any size ``(None, None, 3)``, crops the
centre fraction, resizes (bilinear, antialiased) and scales to [0, 1], then the
trained network follows. So ``predict`` on raw 512² or 423² JPEGs needs no
flags. The training pipeline calls the very same :func:`preprocess_images`.

Importing this module imports Keras; the trainer imports it only when needed.
"""

import logging
import os
from pathlib import Path

import keras
import numpy as np
from keras import layers

from galaxy_classification import CLASS_NAMES

SEED_INPUT_SHAPE = (512, 512, 3)

# The seed's recipe: everything but the input size is fixed.
SEED_PRESET = {
    "crop_fraction": {"directory": 1.0, "csv": 1.0},
    "image_size": None,  # None: the images' native size
    "epochs": 15,
    "batch_size": 5,
    "class_weights": False,
    "augment": None,
    "early_stopping_patience": None,
}

# The modern recipe, in one place. Tuned on the shared Galaxy Zoo 1 cutouts
# (validation split only; see models/README.md): a 0.35 centre crop of a GZ1
# frame at 64 px matched a 0.5 crop at 80 px and is 1.5x cheaper.
MODERN_PRESET = {
    # fraction of the frame's side kept around the centre, by --data form: the
    # network sees ~3.5 x petroR90 across, i.e. 0.35 of a GZ1 frame (~10 x
    # petroR90) or 0.7 of an sdss_query cutout (5.12 x petroR90_g)
    "crop_fraction": {"directory": 0.7, "csv": 0.35},
    "image_size": 64,
    "widths": (16, 32, 64, 128),
    "convs_per_block": (1, 2, 2, 2),  # one conv at full resolution keeps it fast on a CPU
    "dropout": 0.3,
    "epochs": 30,
    "batch_size": 64,
    "min_steps_per_epoch": 25,  # smaller batches on small samples (see quick_cnn_trainer.resolve_settings)
    "learning_rate": 2e-3,
    "weight_decay": 1e-4,
    "label_smoothing": 0.05,
    "class_weights": True,
    "augment": {"dihedral": True, "max_shift": 0.03, "brightness": 0.1},
    "early_stopping_patience": 8,
}

PRESETS = {"seed": SEED_PRESET, "modern": MODERN_PRESET}


# --------------------------------------------------------------------------- preprocessing


def preprocess_images(images, crop_fraction=1.0, image_size=None):
    """Raw RGB batch ``(k, h, w, 3)`` (0-255) -> float32 ``(k, size, size, 3)`` in [0, 1].

    Keeps the central ``crop_fraction`` of the shorter side (square), resizes to
    ``image_size`` (bilinear with antialiasing; skipped when the size already
    matches) and divides by 255. Used by the training pipeline and, inside
    :class:`GalaxyPreprocessing`, by every saved model.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    if crop_fraction < 1.0:
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        side = tf.cast(tf.round(tf.cast(tf.minimum(height, width), tf.float32) * crop_fraction), tf.int32)
        side = tf.maximum(side, 1)
        top, left = (height - side) // 2, (width - side) // 2
        images = images[:, top:top + side, left:left + side, :]
    images = tf.cast(images, tf.float32)
    if image_size is not None:
        shape = tf.shape(images)
        images = tf.cond(
            tf.logical_and(shape[1] == image_size, shape[2] == image_size),
            lambda: images,
            lambda: tf.image.resize(images, (image_size, image_size), method="bilinear", antialias=True),
        )
        images = tf.ensure_shape(images, (None, image_size, image_size, None))
    return images * (1.0 / 255.0)


def preprocess_to_uint8(images, crop_fraction, image_size):
    """:func:`preprocess_images` stored back as uint8: the CSV form's cache."""
    scaled = np.asarray(preprocess_images(images, crop_fraction, image_size))
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


@keras.saving.register_keras_serializable(package="galaxy_classification")
class GalaxyPreprocessing(layers.Layer):
    """Raw uint8 RGB of any size -> centre crop -> resize -> [0, 1] float32."""

    def __init__(self, crop_fraction=1.0, image_size=96, **kwargs):
        super().__init__(**kwargs)
        self.crop_fraction = float(crop_fraction)
        self.image_size = int(image_size)

    def call(self, inputs):
        return preprocess_images(inputs, self.crop_fraction, self.image_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 3)

    def get_config(self):
        return {**super().get_config(), "crop_fraction": self.crop_fraction, "image_size": self.image_size}


def augment_batch(batch, rng, dihedral=True, max_shift=0.0, brightness=0.0):
    """Training-only perturbations of a float32 batch of square images.

    ``dihedral``: a random one of the eight flips / 90° rotations per galaxy
    (the sky has no up or down); ``max_shift``: a random shift of up to that
    fraction of the side, edges reflected; ``brightness``: a random gain in
    [1 - b, 1 + b], clipped to [0, 1].
    """
    batch = np.array(batch, dtype=np.float32, copy=True)
    count, side = batch.shape[0], batch.shape[1]
    if dihedral:
        for axes, chosen in (((1,), rng.random(count) < 0.5), ((2,), rng.random(count) < 0.5)):
            batch[chosen] = np.flip(batch[chosen], axis=axes)
        transposed = rng.random(count) < 0.5
        batch[transposed] = batch[transposed].transpose(0, 2, 1, 3)
    shift = int(round(max_shift * side))
    if shift > 0:
        padded = np.pad(batch, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
        offsets = rng.integers(0, 2 * shift + 1, size=(count, 2))
        batch = np.stack([padded[i, dy:dy + side, dx:dx + side] for i, (dy, dx) in enumerate(offsets)])
    if brightness > 0:
        gains = rng.uniform(1.0 - brightness, 1.0 + brightness, size=(count, 1, 1, 1)).astype(np.float32)
        batch = np.clip(batch * gains, 0.0, 1.0)
    return batch


# --------------------------------------------------------------------------- networks


def create_seed_cnn(input_shape=SEED_INPUT_SHAPE):
    """The seed's network, unchanged: 29,594,562 parameters at 512 × 512 × 3.

    The seed's second dropout rate is not recorded; 0.5, the usual choice
    before the output layer (and the Keras examples' value), is used.
    """
    return keras.Sequential(
        [
            keras.Input(shape=tuple(input_shape)),
            layers.Conv2D(16, (3, 3), padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(pool_size=3),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.BatchNormalization(),
            layers.Dropout(0.5),
            layers.Dense(2, activation="softmax"),
        ],
        name="seed_cnn",
    )


def build_modern_cnn(image_size=96, widths=(16, 32, 64, 128), convs_per_block=(1, 1, 2, 2), dropout=0.3):
    """Conv-BN-ReLU blocks, each followed by 2× max pooling, then global average
    pooling and a 2-way softmax (p_spiral, p_elliptical)."""
    if len(widths) != len(convs_per_block):
        raise ValueError(f"widths {widths} and convs_per_block {convs_per_block} must have the same length")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = inputs
    for width, n_convs in zip(widths, convs_per_block):
        for _ in range(n_convs):
            features = layers.Conv2D(width, 3, padding="same", use_bias=False)(features)
            # momentum 0.9, not Keras' 0.99: a small sample gives few steps per
            # epoch, and the slow default leaves validation-time statistics stale
            features = layers.BatchNormalization(momentum=0.9)(features)
            features = layers.ReLU()(features)
        features = layers.MaxPooling2D(2)(features)
    features = layers.GlobalAveragePooling2D()(features)
    features = layers.Dropout(dropout)(features)
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", name="class_probabilities")(features)
    return keras.Model(inputs, outputs, name="modern_cnn")


def build_core_model(preset_name, preset, image_size):
    """The trainable network for a preset, taking float32 (size, size, 3) in [0, 1]."""
    if preset_name == "seed":
        return create_seed_cnn((image_size, image_size, 3))
    return build_modern_cnn(image_size, preset["widths"], preset["convs_per_block"], preset["dropout"])


def compile_model(model, preset_name, preset, steps_per_epoch):
    """The seed: adam, categorical cross-entropy. Modern: AdamW with a short
    warm-up then cosine decay over the planned epochs, label smoothing."""
    if preset_name == "seed":
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        return model
    total_steps = max(1, steps_per_epoch * preset["epochs"])
    warmup_steps = min(total_steps // 10, 200)
    schedule = keras.optimizers.schedules.CosineDecay(
        preset["learning_rate"] * 0.1, max(1, total_steps - warmup_steps), alpha=0.01,
        warmup_target=preset["learning_rate"], warmup_steps=warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=preset["weight_decay"]),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset["label_smoothing"]),
        metrics=["accuracy"],
    )
    return model


def wrap_for_saving(core_model, crop_fraction, image_size):
    """raw uint8 (None, None, 3) -> GalaxyPreprocessing -> the trained network.
    Shares the trained weights; the core model's own layers are untouched."""
    raw_images = keras.Input(shape=(None, None, 3), dtype="uint8", name="raw_rgb_image")
    model_input = GalaxyPreprocessing(crop_fraction, image_size, name="preprocessing")(raw_images)
    return keras.Model(raw_images, core_model(model_input), name="galaxy_classifier")


def set_crop_fraction(model, crop_fraction):
    """Make a loaded classifier keep ``crop_fraction`` of each frame (before
    its first prediction): for frames with another field of view."""
    for layer in model.layers:
        if isinstance(layer, GalaxyPreprocessing):
            layer.crop_fraction = float(crop_fraction)
            return model
    raise ValueError("this model has no preprocessing layer whose crop could be changed")


def forget_optimizer(model):
    """Once training is over, detach the optimizer so that saved files hold
    what prediction needs and not Adam's two extra copies of every weight (for
    the seed preset 118 MB instead of 355 MB; saving needs less memory too)."""
    model.optimizer = None
    model.compiled = False  # and no compile settings in the saved file


def prediction_batch_size(model, pixels_per_batch=32 * 128 * 128):
    """Images per prediction batch for a saved classifier: 32 at up to 128 px,
    fewer for bigger inputs (the seed's 512² activations are 16x larger), so
    prediction never needs more memory than training did."""
    sizes = [layer.image_size for layer in model.layers if isinstance(layer, GalaxyPreprocessing)]
    side = sizes[0] if sizes else 128
    return int(max(1, min(32, pixels_per_batch // (side * side))))


# --------------------------------------------------------------------------- files


def save_model(model, path):
    """Save as ``.keras`` or ``.h5`` (by suffix), atomically."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    absl_logger = logging.getLogger("absl")
    previous_level = absl_logger.level
    try:
        if path.suffix.lower() == ".h5":  # asked for on purpose: no "legacy format" warning
            absl_logger.setLevel(logging.ERROR)
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        absl_logger.setLevel(previous_level)
        if temporary.exists():
            temporary.unlink()
    return path


def load_model(path):
    """Load a ``.keras`` or ``.h5`` classifier that takes raw uint8 images.

    A model saved without :class:`GalaxyPreprocessing` (e.g. the seed's own
    ``my-galaxy-model.h5``, which expects [0, 1] images of one size) is wrapped
    so that it takes raw images too: resized to its input size, no crop.
    """
    path = Path(path)
    if path.suffix.lower() not in (".keras", ".h5"):
        raise ValueError(f"--model {path}: expected a .keras or .h5 file")
    if not path.is_file():
        raise ValueError(f"--model {path}: no such file")
    try:
        model = keras.models.load_model(
            path, custom_objects={"GalaxyPreprocessing": GalaxyPreprocessing}, compile=False
        )
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"--model {path}: not a loadable Keras model ({str(error).splitlines()[0]})") from None
    if not any(isinstance(layer, GalaxyPreprocessing) for layer in model.layers):
        height, width = model.input_shape[1:3]
        if height is None or height != width:
            raise ValueError(f"--model {path}: takes {model.input_shape}, expected square images")
        model = wrap_for_saving(model, 1.0, height)
    return model


def predict_probabilities(model, images, batch_size=None, progress=True):
    """(n, 2) float array of (p_spiral, p_elliptical) for every image of an
    :class:`~galaxy_classification.datasets.NpyImages` / ``ImageFiles``."""
    from tqdm import tqdm

    from galaxy_classification import datasets

    batch_size = batch_size or prediction_batch_size(model)
    probabilities = np.zeros((len(images), len(CLASS_NAMES)), dtype=np.float32)
    with tqdm(total=len(images), desc="classifying", unit="img", disable=not progress) as bar:
        for rows, batch in datasets.iter_raw_batches(images, batch_size):
            probabilities[rows] = np.asarray(model.predict_on_batch(batch))
            bar.update(len(rows))
    return probabilities
