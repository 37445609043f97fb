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
"""

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxy_classification import CLASS_NAMES
from galaxy_classification.quiet import import_keras

keras = import_keras()
layers = keras.layers

SEED_INPUT_SHAPE = (512, 512, 3)
FIELD_ATTRIBUTE = "galaxy_classification_field_of_view"  # where a .h5 keeps its field


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
    min_steps_per_epoch: int = None  # smaller batches on small samples (quick_cnn_trainer.resolve_settings)
    widths: tuple = ()
    convs_per_block: tuple = ()
    dropout: float = 0.0
    learning_rate: float = None
    weight_decay: float = None
    label_smoothing: float = 0.0
    crop_fraction: float = None  # set per run from the data's field (resolve_settings)


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

PRESETS = {preset.name: preset for preset in (SEED_PRESET, MODERN_PRESET)}


# --------------------------------------------------------------------------- preprocessing


def preprocess_images(images, crop_fraction=1.0, image_size=None):
    """Raw RGB batch ``(k, h, w, 3)`` (0-255) -> float32 ``(k, size, size, 3)`` in [0, 1].

    Keeps the central ``crop_fraction`` of the shorter side (square), resizes to
    ``image_size`` (bilinear with antialiasing; skipped when the size already
    matches) and divides by 255. Used by the input pipeline and, inside
    :class:`GalaxyPreprocessing`, by every saved model. Written with
    ``keras.ops``, so it runs on any Keras backend.
    """
    from keras import ops

    images = ops.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    if crop_fraction < 1.0:
        if height is not None and width is not None:
            side = max(1, round(min(height, width) * crop_fraction))
            top, left = (height - side) // 2, (width - side) // 2
        else:  # a symbolic frame size (the saved model's TensorFlow graph): the same arithmetic as tensors
            shape = ops.shape(images)
            height, width = shape[1], shape[2]
            side = ops.maximum(ops.cast(ops.round(ops.cast(ops.minimum(height, width), "float32") * crop_fraction),
                                        "int32"), 1)
            top, left = (height - side) // 2, (width - side) // 2
        images = images[:, top:top + side, left:left + side, :]
    images = ops.cast(images, "float32")
    if image_size is not None and not (images.shape[1] == image_size and images.shape[2] == image_size):
        images = ops.image.resize(images, (image_size, image_size), interpolation="bilinear", antialias=True)
    return images * (1.0 / 255.0)


def preprocess_to_uint8(images, crop_fraction, image_size):
    """:func:`preprocess_images` stored back as uint8: the CSV form's cache."""
    scaled = np.asarray(preprocess_images(images, crop_fraction, image_size))
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


@keras.saving.register_keras_serializable(package="galaxy_classification")
class GalaxyPreprocessing(layers.Layer):
    """Raw uint8 RGB of any size -> centre crop -> resize -> [0, 1] float32.

    Besides the crop it applies, it records what the network was trained on:
    ``view_petro_radii`` (petroR90 across the network's input),
    ``trained_field`` (petroR90 across the training frames) and ``band``.
    """

    def __init__(self, crop_fraction=1.0, image_size=96, view_petro_radii=None, trained_field=None, band=None,
                 temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)  # a record: the network's weights already hold it
        self.crop_fraction = float(crop_fraction)
        self.image_size = int(image_size)
        self.view_petro_radii = None if view_petro_radii is None else float(view_petro_radii)
        self.trained_field = None if trained_field is None else float(trained_field)
        self.band = band

    def call(self, inputs):
        return preprocess_images(inputs, self.crop_fraction, self.image_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 3)

    def get_config(self):
        return {**super().get_config(), "crop_fraction": self.crop_fraction, "image_size": self.image_size,
                "view_petro_radii": self.view_petro_radii, "trained_field": self.trained_field, "band": self.band,
                "temperature": self.temperature}


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


def create_seed_cnn(input_shape=SEED_INPUT_SHAPE, name="seed_cnn"):
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
        name=name,
    )


def build_modern_cnn(image_size=96, widths=(16, 32, 64, 128), convs_per_block=(1, 1, 2, 2), dropout=0.3,
                     name="modern_cnn"):
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
    return keras.Model(inputs, outputs, name=name)


def build_core_model(preset, image_size, member=None):
    """The trainable network for a preset, taking float32 (size, size, 3) in [0, 1];
    ``member`` numbers it within an ensemble (names must differ)."""
    name = f"{preset.name}_cnn" + ("" if member is None else f"_{member}")
    if preset.name == "seed":
        return create_seed_cnn((image_size, image_size, 3), name=name)
    return build_modern_cnn(image_size, preset.widths, preset.convs_per_block, preset.dropout, name=name)


def compile_model(model, preset, steps_per_epoch):
    """The seed: adam, categorical cross-entropy. Modern: AdamW with a short
    warm-up then cosine decay over the planned epochs, label smoothing."""
    if preset.name == "seed":
        model.compile(optimizer=keras.optimizers.Adam(preset.learning_rate), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    total_steps = max(1, steps_per_epoch * preset.epochs)
    warmup_steps = min(total_steps // 10, 200)
    schedule = keras.optimizers.schedules.CosineDecay(
        preset.learning_rate * 0.1, max(1, total_steps - warmup_steps), alpha=0.01,
        warmup_target=preset.learning_rate, warmup_steps=warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=preset.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing),
        metrics=["accuracy"],
    )
    return model


def wrap_for_saving(core_model, crop_fraction, image_size, trained_field=None, temperature=1.0):
    """raw uint8 (None, None, 3) -> GalaxyPreprocessing -> the trained network.
    ``trained_field`` (a FieldOfView) is the training frames' field; the
    network then sees ``crop_fraction`` of it; ``temperature`` (already folded
    into the network's weights, :func:`fold_temperature`) is recorded. Shares
    the trained weights."""
    view = band = field = None
    if trained_field is not None:
        field, band = trained_field.petro_radii, trained_field.band
        view = round(field * crop_fraction, 6)
    raw_images = keras.Input(shape=(None, None, 3), dtype="uint8", name="raw_rgb_image")
    model_input = GalaxyPreprocessing(crop_fraction, image_size, view, field, band, temperature,
                                      name="preprocessing")(raw_images)
    return keras.Model(raw_images, core_model(model_input), name="galaxy_classifier")


def softmax_layers(network):
    """The Dense softmax layers that end ``network`` (one, or one per ensemble member)."""
    found = [layer for layer in _all_layers(network)
             if isinstance(layer, layers.Dense) and layer.activation is keras.activations.softmax]
    if not found:
        raise ValueError(f"{network.name} does not end in a Dense softmax layer")
    return found


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def fold_temperature(network, temperature):
    """Calibrate ``network`` in place: softmax(z / T) is softmax(log p / T), so
    dividing its last Dense layers' weights by T gives the calibrated
    probabilities with plain Keras layers (the .h5 stays loadable anywhere)."""
    for layer in softmax_layers(network):
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel / temperature, bias / temperature])
    return network


def average_of(members):
    """One network whose output is the mean of the members' probabilities:
    plain Keras layers, so a saved ensemble loads anywhere."""
    image = keras.Input(shape=members[0].input_shape[1:], name="image")
    probabilities = layers.Average(name="ensemble_mean")([member(image) for member in members])
    return keras.Model(image, probabilities, name=f"ensemble_of_{len(members)}")


def forget_optimizer(model):
    """Once training is over, detach the optimizer so that saved files hold
    what prediction needs and not Adam's two extra copies of every weight (for
    the seed preset 118 MB instead of 355 MB; saving needs less memory too)."""
    model.optimizer = None
    model.compiled = False  # and no compile settings in the saved file


# --------------------------------------------------------------------------- the classifier


@dataclass
class Classifier:
    """A saved model ready to classify frames of any field of view.

    ``network`` takes float32 (image_size, image_size, 3) in [0, 1];
    ``view_petro_radii`` is how much sky it was trained to look at (None for a
    model saved without that record), ``trained_field`` the training frames'
    field and ``default_crop`` the crop it was trained with.
    """

    keras_model: object
    network: object
    image_size: int
    default_crop: float = 1.0
    view_petro_radii: float = None
    trained_field: float = None
    band: str = None
    name: str = ""
    sha256: str = ""
    temperature: float = 1.0  # a record: the network's weights already hold it

    def crop_for(self, field, what="input"):
        """The centre fraction of frames with ``field`` (a FieldOfView, or None
        when unknown) that shows the sky this model was trained on."""
        if self.view_petro_radii is None:
            print(f"note: {self.name} does not record the field it was trained on; {what} gets its "
                  f"trained crop {self.default_crop:g}", file=sys.stderr)
            return self.default_crop
        if field is None:
            print(f"note: {what}: field of view unknown; assuming frames like {self.name}'s training data "
                  f"({self.trained_field:.4g} x petroR90 across), crop {self.default_crop:g} (give "
                  "--field-of-view, in petroR90 across, if that is wrong)", file=sys.stderr)
            return self.default_crop
        crop = field.crop_for(self.view_petro_radii)
        if self.view_petro_radii > field.petro_radii * 1.02:
            print(f"note: {what} shows {field.petro_radii:.4g} x petroR90 across, less than the "
                  f"{self.view_petro_radii:.4g} {self.name} was trained on; it sees the whole frame, "
                  "the galaxy larger than in training", file=sys.stderr)
        return crop

    def field_record(self):
        return {"view_petro_radii": self.view_petro_radii, "trained_field": self.trained_field,
                "band": self.band, "image_size": self.image_size, "temperature": self.temperature}


def prediction_batch_size(image_size, pixels_per_batch=128 * 64 * 64):
    """Images per prediction batch: 128 at 64 px (measured on 2 cores: 128 a batch
    predicts ~15% faster than 32), fewer for bigger inputs (32 at 128 px, 2 at
    the seed's 512²), so prediction never holds more pixels than that at once."""
    return int(max(1, min(128, pixels_per_batch // (image_size * image_size))))


# --------------------------------------------------------------------------- files


def save_model(model, path, field_record=None):
    """Save as ``.keras`` or ``.h5`` (by suffix), atomically; a ``.h5`` gets
    ``field_record`` as an HDF5 attribute."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    absl_logger = logging.getLogger("absl")
    previous_level = absl_logger.level
    try:
        if path.suffix.lower() == ".h5":  # asked for on purpose: no "legacy format" warning
            absl_logger.setLevel(logging.ERROR)
            model.save(temporary, include_optimizer=False)
        else:
            model.save(temporary)
        if path.suffix.lower() == ".h5" and field_record is not None:
            import h5py

            with h5py.File(temporary, "a") as handle:
                handle.attrs[FIELD_ATTRIBUTE] = json.dumps(field_record)
        os.replace(temporary, path)
    finally:
        absl_logger.setLevel(previous_level)
        if temporary.exists():
            temporary.unlink()
    return path


def save_classifier_files(core_model, stem, crop_fraction, image_size, trained_field, temperature=1.0):
    """``stem.keras`` (self-preprocessing, raw uint8 of any size, calibrated)
    and ``stem.h5`` (the bare network: float32 [0, 1] at ``image_size``, its
    softmax output as trained; the temperature is in its attributes)."""
    classifier = wrap_for_saving(core_model, crop_fraction, image_size, trained_field, temperature)
    preprocessing = classifier.get_layer("preprocessing")
    record = {"view_petro_radii": preprocessing.view_petro_radii, "trained_field": preprocessing.trained_field,
              "band": preprocessing.band, "image_size": image_size, "crop_fraction": crop_fraction,
              "temperature": temperature}
    stem = Path(stem)
    save_model(core_model, stem.with_suffix(".h5"), record)
    save_model(classifier, stem.with_suffix(".keras"))
    return stem.with_suffix(".h5"), stem.with_suffix(".keras")


def load_model(path):
    """A :class:`Classifier` from a ``.keras`` or ``.h5`` file.

    A model without :class:`GalaxyPreprocessing` (a ``.h5`` of the bare
    network, the seed's own ``my-galaxy-model.h5``) expects [0, 1] images of
    one size; it is wrapped so that it takes raw images too: resized to its
    input size, no crop, its field read from the file's attributes if there.
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
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    preprocessing = [layer for layer in model.layers if isinstance(layer, GalaxyPreprocessing)]
    if preprocessing:
        layer = preprocessing[0]
        network = model.layers[model.layers.index(layer) + 1]
        return Classifier(model, network, layer.image_size, layer.crop_fraction, layer.view_petro_radii,
                          layer.trained_field, layer.band, path.name, checksum, layer.temperature)
    height, width = model.input_shape[1:3]
    if height is None or height != width:
        raise ValueError(f"--model {path}: takes {model.input_shape}, expected square images")
    record = _h5_field_record(path)
    crop = record.get("crop_fraction", 1.0)
    return Classifier(wrap_for_saving(model, crop, height), model, height, crop, record.get("view_petro_radii"),
                      record.get("trained_field"), record.get("band"), path.name, checksum,
                      record.get("temperature", 1.0))


def _h5_field_record(path):
    if path.suffix.lower() != ".h5":
        return {}
    import h5py

    with h5py.File(path, "r") as handle:
        text = handle.attrs.get(FIELD_ATTRIBUTE)
    return json.loads(text) if text else {}


def predict_probabilities(classifier, images, crops, batch_size=None, progress=True, draft=True):
    """(n, 2) float array of (p_spiral, p_elliptical) for every image of an
    :class:`~galaxy_classification.datasets.NpyImages` / ``ImageFiles``;
    ``crops`` is the centre fraction to keep, one per image or one for all.
    The next batch is decoded and preprocessed while the network runs."""
    from tqdm.auto import tqdm

    from galaxy_classification import input_pipeline

    batch_size = batch_size or prediction_batch_size(classifier.image_size)
    probabilities = np.zeros((len(images), len(CLASS_NAMES)), dtype=np.float32)
    with tqdm(total=len(images), desc="classifying", unit="img", disable=not progress) as bar:
        for rows, batch in input_pipeline.prepared_batches(images, crops, classifier.image_size, batch_size, draft):
            probabilities[rows] = np.asarray(classifier.network.predict_on_batch(batch))
            bar.update(len(rows))
    return probabilities
