"""What every network sees: the centre crop, resize and scaling shared by the
input pipeline and the saved models, and the training-only augmentation.

:func:`preprocess_images` is written in ``keras.ops`` (any backend);
:class:`GalaxyPreprocessing` puts it inside a saved ``.keras`` model together
with the record of the field of view the network was trained on.
"""

import numpy as np

from galaxy_classification.quiet import import_keras

keras = import_keras()
layers = keras.layers


def centre_window(height, width, crop_fraction):
    """``(top, left, side)`` of the square that :func:`preprocess_images` keeps:
    the central ``crop_fraction`` of the shorter side."""
    side = max(1, round(min(height, width) * crop_fraction))
    return (height - side) // 2, (width - side) // 2, side


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
            top, left, side = centre_window(height, width, crop_fraction)
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



PREPARE_CHUNK = 8  # images turned to float at once: a batch of 512² frames as float32 would be 200 MB in flight


def prepare_images(images, crop_fraction=1.0, image_size=None):
    """uint8 batch -> float32 batch in [0, 1], cropped and resized, a few images at a time."""
    return np.concatenate([
        preprocess_images(images[start:start + PREPARE_CHUNK], crop_fraction, image_size).numpy()
        for start in range(0, len(images), PREPARE_CHUNK)
    ])
