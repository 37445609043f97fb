"""Saved models: the two files the trainer writes, loading either back as a
:class:`Classifier` that knows its field of view, and prediction with it.

- ``.keras``: raw uint8 RGB of any size -> :class:`GalaxyPreprocessing` -> the
  network (:func:`wrap_for_saving`);
- ``.h5``: the bare network (float32 [0, 1] at its input size), the seed's
  contract, with its field of view in the file's HDF5 attributes.
"""

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxy_classification import CLASS_NAMES, PRETRAINED_MODEL_NAME
from galaxy_classification.data import storage
from galaxy_classification.data.field_of_view import CropPolicy, FieldOfView
from galaxy_classification.errors import ModelFileError, note
from galaxy_classification.model.preprocessing import GalaxyPreprocessing
from galaxy_classification.quiet import import_keras

keras = import_keras()

FIELD_ATTRIBUTE = "galaxy_classification_field_of_view"  # where a .h5 keeps its field


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
    path: Path = None

    def crop_policy(self, override=None):
        """The crops that show new frames the sky this model was trained on (``override``: ``--crop``)."""
        return CropPolicy(self.view_petro_radii, self.default_crop, override, self.name, self.trained_field)

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


def combine(classifiers, stem):
    """Save the average of saved classifiers as one model (``stem.keras`` and
    ``stem.h5``): members trained apart (other seeds, other machines) vote
    equally. They must see the same sky the same way (input size, crop, field
    of view, band); each keeps the temperature it was calibrated with."""
    from galaxy_classification.model.architectures import average_of

    if len(classifiers) < 2:
        raise ModelFileError(f"MODEL: an ensemble needs at least 2 models, got {len(classifiers)}")
    seen = {}
    for classifier in classifiers:
        if classifier.sha256 in seen:
            raise ModelFileError(f"MODEL: {_named(classifier)} is the same model as {_named(seen[classifier.sha256])}; "
                                 "a model averaged with itself is no ensemble")
        seen[classifier.sha256] = classifier
    first = classifiers[0]
    for other in classifiers[1:]:
        mine, theirs = _viewing(first), _viewing(other)
        if mine != theirs:
            raise ModelFileError(f"MODEL: {_named(other)} sees {theirs}, {_named(first)} sees {mine}: the members of "
                                 "an ensemble must take the same input (image_size, crop, view, trained field, band)")
    members = [keras.Model(classifier.network.inputs[0], classifier.network.outputs[0], name=f"member_{index}")
               for index, classifier in enumerate(classifiers)]
    field = None if first.trained_field is None else FieldOfView(first.trained_field, band=first.band)
    return save_classifier_files(average_of(members), stem, first.default_crop, first.image_size, field)


def save_ensemble(model_paths, out="ensemble.keras") -> Path:
    """Save the average of the saved models ``model_paths`` as ``out`` (.keras) and its .h5; return the .keras path."""
    out = Path(out)
    if out.suffix.lower() != ".keras":
        raise ModelFileError(f"--out {out}: expected a .keras file name (the .h5 is written beside it)")
    storage.check_can_write(out, "--out", directory=False)
    classifiers = [load_classifier(path) for path in model_paths]
    h5_path, keras_path = combine(classifiers, out.with_suffix(""))
    print(f"saved {keras_path} (the mean of {len(classifiers)} models' probabilities) and {h5_path}")
    return keras_path


def _named(classifier):
    return str(classifier.path or classifier.name)


def _viewing(classifier):
    """What a member takes: its field record and crop, without the temperature
    (each member's own, folded into its weights)."""
    record = {**classifier.field_record(), "crop": classifier.default_crop}
    del record["temperature"]
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in record.items()}


def pretrained_model_path() -> Path:
    """The shipped model: ``models/`` of a checkout, or where ``pip install`` put it."""
    checkout = Path(__file__).resolve().parents[2] / "models" / PRETRAINED_MODEL_NAME
    installed = Path(sys.prefix) / "share" / "galaxy-classification" / "models" / PRETRAINED_MODEL_NAME
    return checkout if checkout.is_file() or not installed.is_file() else installed


def load_classifier(path=None) -> "Classifier":
    """:func:`load_model` of ``path``, or of the shipped model when ``path`` is None."""
    if path is None:
        path = pretrained_model_path()
        if not path.is_file():
            raise ModelFileError(f"--model not given and the pretrained model {path} is not there; train one (it "
                                 "saves my-galaxy-model.keras) and pass --model")
    return load_model(path)


def load_model(path):
    """A :class:`Classifier` from a ``.keras`` or ``.h5`` file.

    A model without :class:`GalaxyPreprocessing` (a ``.h5`` of the bare
    network, the seed's own ``my-galaxy-model.h5``) expects [0, 1] images of
    one size; it is wrapped so that it takes raw images too: resized to its
    input size, no crop, its field read from the file's attributes if there.
    """
    path = Path(path)
    if path.suffix.lower() not in (".keras", ".h5"):
        raise ModelFileError(f"--model {path}: expected a .keras or .h5 file")
    if not path.is_file():
        raise ModelFileError(f"--model {path}: no such file")
    _check_container(path)
    try:
        model = keras.models.load_model(
            path, custom_objects={"GalaxyPreprocessing": GalaxyPreprocessing}, compile=False
        )
    except Exception as error:  # Keras raises many kinds for a file it cannot rebuild a model from
        raise ModelFileError(f"--model {path}: not a loadable Keras model ({type(error).__name__}: "
                             f"{(str(error).splitlines() or [''])[0][:200]})") from None
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    preprocessing = [layer for layer in model.layers if isinstance(layer, GalaxyPreprocessing)]
    if preprocessing:
        layer = preprocessing[0]
        network = model.layers[model.layers.index(layer) + 1]
        _check_input_and_output(path, network)
        return _noted(Classifier(model, network, layer.image_size, layer.crop_fraction, layer.view_petro_radii,
                                 layer.trained_field, layer.band, path.name, checksum, layer.temperature, path))
    _check_input_and_output(path, model)
    height, width = model.input_shape[1:3]
    if height is None or height != width:
        raise ModelFileError(f"--model {path}: takes {model.input_shape}, expected square images")
    record = _h5_field_record(path)
    crop = record.get("crop_fraction", 1.0)
    return _noted(Classifier(wrap_for_saving(model, crop, height), model, height, crop,
                             record.get("view_petro_radii"), record.get("trained_field"), record.get("band"),
                             path.name, checksum, record.get("temperature", 1.0), path))


def _check_container(path):
    """A .keras is a zip archive and a .h5 an HDF5 file: anything else is damaged or truncated."""
    import zipfile

    import h5py

    complete = zipfile.is_zipfile(path) if path.suffix.lower() == ".keras" else h5py.is_hdf5(path)
    if not complete:
        kind = "zip archive" if path.suffix.lower() == ".keras" else "HDF5 file"
        raise ModelFileError(f"--model {path}: not a complete {path.suffix} file (not a {kind}: truncated, or "
                             "damaged in transfer?)")


def _check_input_and_output(path, network):
    """A network this tool can use: one RGB image input (batch, h, w, 3), two class probabilities out."""
    shapes = network.input_shape, network.output_shape
    if not all(isinstance(shape, tuple) and shape and not isinstance(shape[0], tuple) for shape in shapes):
        raise ModelFileError(f"--model {path}: takes {shapes[0]} and gives {shapes[1]}; expected one image in "
                             "and one pair of probabilities out")
    if len(shapes[0]) != 4 or shapes[0][-1] != 3:
        raise ModelFileError(f"--model {path}: takes input of shape {shapes[0]}; expected RGB images "
                             "(batch, height, width, 3)")
    if len(shapes[1]) != 2 or shapes[1][-1] != len(CLASS_NAMES):
        raise ModelFileError(f"--model {path}: gives output of shape {shapes[1]}; expected the {len(CLASS_NAMES)} "
                             f"probabilities ({', '.join(CLASS_NAMES)}) of a softmax (a single sigmoid or another "
                             "number of classes cannot be read as spiral or elliptical)")


def _noted(classifier):
    if classifier.view_petro_radii is None:
        note(f"{classifier.name} does not record the field it was trained on; every input gets its trained crop "
             f"{classifier.default_crop:g}")
    return classifier


def _h5_field_record(path):
    if path.suffix.lower() != ".h5":
        return {}
    import h5py

    with h5py.File(path, "r") as handle:
        text = handle.attrs.get(FIELD_ATTRIBUTE)
    return json.loads(text) if text else {}


def predict_probabilities(classifier, images, crops, batch_size=None, progress=True, draft=True):
    """(n, 2) float array of (p_spiral, p_elliptical) for every image of an
    :class:`~galaxy_classification.data.image_stores.NpyImages` / ``ImageFiles``;
    ``crops`` is the centre fraction to keep, one per image or one for all.
    The next batch is decoded and preprocessed while the network runs."""
    from tqdm.auto import tqdm

    from galaxy_classification.data import input_pipeline

    batch_size = batch_size or prediction_batch_size(classifier.image_size)
    probabilities = np.zeros((len(images), len(CLASS_NAMES)), dtype=np.float32)
    with tqdm(total=len(images), desc="classifying", unit="img", disable=not progress) as bar:
        for rows, batch in input_pipeline.prepared_batches(images, crops, classifier.image_size, batch_size, draft):
            probabilities[rows] = np.asarray(classifier.network.predict_on_batch(batch))
            bar.update(len(rows))
    return probabilities
