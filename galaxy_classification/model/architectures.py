"""The networks: the seed's, layer for layer, and the modern one; their
optimisers, ensembles and temperature folding. Plain Keras layers only, so a
saved network loads with nothing of this project imported.
"""

from galaxy_classification import CLASS_NAMES
from galaxy_classification.errors import UsageError
from galaxy_classification.model import precision as precision_module
from galaxy_classification.quiet import import_keras

keras = import_keras()
layers = keras.layers

SEED_INPUT_SHAPE = (512, 512, 3)


def create_seed_cnn(input_shape=SEED_INPUT_SHAPE, name="seed_cnn", dtype="float32"):
    """The seed's network, unchanged: 29,594,562 parameters at 512 × 512 × 3.

    The seed's second dropout rate is not recorded; 0.5, the usual choice
    before the output layer (and the Keras examples' value), is used.
    ``dtype``: the Keras dtype policy of every layer but the softmax, which
    stays float32 (:mod:`galaxy_classification.model.precision`).
    """
    return keras.Sequential(
        [
            keras.Input(shape=tuple(input_shape)),
            layers.Conv2D(16, (3, 3), padding="same", activation="relu", dtype=dtype),
            layers.BatchNormalization(dtype=dtype),
            layers.MaxPooling2D(pool_size=3, dtype=dtype),
            layers.Dropout(0.25, dtype=dtype),
            layers.Flatten(dtype=dtype),
            layers.Dense(64, activation="relu", dtype=dtype),
            layers.BatchNormalization(dtype=dtype),
            layers.Dropout(0.5, dtype=dtype),
            layers.Dense(2, activation="softmax", dtype="float32"),
        ],
        name=name,
    )


def build_modern_cnn(image_size=96, widths=(16, 32, 64, 128), convs_per_block=(1, 1, 2, 2), dropout=0.3,
                     name="modern_cnn", dtype="float32"):
    """Conv-BN-ReLU blocks, each followed by 2× max pooling, then global average
    pooling and a 2-way softmax (p_spiral, p_elliptical). ``dtype``: the Keras
    dtype policy of the convolution blocks; the pooled head and the softmax
    stay float32 so the probabilities keep their precision."""
    if len(widths) != len(convs_per_block):
        raise UsageError(f"widths {widths} and convs_per_block {convs_per_block} must have the same length")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = inputs
    for width, n_convs in zip(widths, convs_per_block):
        for _ in range(n_convs):
            features = layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype)(features)
            # momentum 0.9, not Keras' 0.99: a small sample gives few steps per
            # epoch, and the slow default leaves validation-time statistics stale
            features = layers.BatchNormalization(momentum=0.9, dtype=dtype)(features)
            features = layers.ReLU(dtype=dtype)(features)
        features = layers.MaxPooling2D(2, dtype=dtype)(features)
    # the head in float32 under mixed bfloat16: with the pooling in bfloat16 too, 3 seeds ranked the
    # held-out galaxies worse (ROC AUC 0.960 against 0.962, Brier 0.078 against 0.075; models/README.md)
    features = layers.GlobalAveragePooling2D(dtype="float32")(features)
    features = layers.Dropout(dropout, dtype="float32")(features)
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", name="class_probabilities",
                           dtype="float32")(features)
    return keras.Model(inputs, outputs, name=name)


def build_core_model(preset, image_size, member=None, precision=None):
    """The trainable network for a preset, taking float32 (size, size, 3) in [0, 1];
    ``member`` numbers it within an ensemble (names must differ). ``precision``
    (default: the preset's; ``auto`` is settled by :func:`precision.choose`)
    is the arithmetic it trains in."""
    name = f"{preset.name}_cnn" + ("" if member is None else f"_{member}")
    dtype = precision_module.choose(precision or preset.precision)
    if preset.name == "seed":
        return create_seed_cnn((image_size, image_size, 3), name=name, dtype=dtype)
    return build_modern_cnn(image_size, preset.widths, preset.convs_per_block, preset.dropout, name=name,
                            dtype=dtype)


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


def softmax_layers(network):
    """The Dense softmax layers that end ``network`` (one, or one per ensemble member)."""
    found = [layer for layer in all_layers(network)
             if isinstance(layer, layers.Dense) and layer.activation is keras.activations.softmax]
    if not found:
        raise UsageError(f"{network.name} does not end in a Dense softmax layer")
    return found


def all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


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

