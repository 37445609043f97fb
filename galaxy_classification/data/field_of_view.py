"""How much sky a frame shows, in units of the galaxy's own size.

A cutout made at ``scale_factor x petroR90`` arcsec per pixel and ``image_size``
pixels across shows ``scale_factor x image_size`` Petrosian radii (petroR90 of
``band``) whatever the galaxy's distance: that number, :attr:`FieldOfView.petro_radii`,
is what a network learns on and what it must be shown again. It is born in the
query, written beside the images (``dataset.json``), read by training to choose
its crop, saved inside every model, and read by ``predict``, ``evaluate`` and
``classify`` to crop each new frame to the sky the model was trained on:
crop fraction = the model's view / the frame's field.

In arcseconds the field differs from galaxy to galaxy (``image_size x
cutout_scale``, the per-galaxy ``cutout_scale`` column of ``galaxy_data.csv``);
``dataset.json`` also records their range.
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from galaxy_classification.errors import DataFileError, UsageError, note

DATASET_FILE = "dataset.json"
RADIUS_BANDS = ("g", "r")


@dataclass(frozen=True)
class FieldOfView:
    """A frame ``petro_radii`` petroR90 (of ``band``) across, ``image_size`` pixels wide.

    ``source`` says how it is known: ``'recorded'`` (written by the tool that
    made the frames), ``'given'`` (by the user), ``'documented'`` (a known
    survey's frames) or ``'assumed'`` (nothing said; a warning was shown).
    """

    petro_radii: float
    image_size: int = None
    band: str = "g"
    scale_factor: float = None  # arcsec per pixel per arcsec of petroR90
    data_release: str = None
    arcsec_range: tuple = None  # (smallest, largest) field in arcsec over the galaxies
    source: str = "recorded"

    def __post_init__(self):
        if not (isinstance(self.petro_radii, (int, float)) and math.isfinite(self.petro_radii)
                and self.petro_radii > 0):
            raise UsageError(f"field of view must be a positive number of petroR90 across, got {self.petro_radii!r}")
        if self.band not in RADIUS_BANDS:
            raise UsageError(f"field of view band must be one of {RADIUS_BANDS}, got {self.band!r}")

    @classmethod
    def from_cutouts(cls, scale_factor, image_size, band="g", data_release=None, radii_arcsec=(), source="recorded"):
        """The field of cutouts made at ``scale_factor x petroR90_<band>`` arcsec/pixel."""
        radii = [float(radius) for radius in radii_arcsec if radius == radius]
        arcsec = (round(min(radii) * scale_factor * image_size, 3),
                  round(max(radii) * scale_factor * image_size, 3)) if radii else None
        return cls(round(scale_factor * image_size, 6), int(image_size), band, scale_factor, data_release,
                   arcsec, source)

    def crop_for(self, view_petro_radii):
        """The centre fraction of this frame that shows ``view_petro_radii`` across.
        Above 1 the frame shows less sky than asked for: the whole frame is kept."""
        return min(1.0, view_petro_radii / self.petro_radii)

    def describe(self):
        text = f"{self.petro_radii:.4g} x petroR90_{self.band} across"
        if self.image_size and self.scale_factor:
            text += f" ({self.image_size} px at {self.scale_factor:g} x petroR90_{self.band} arcsec/pixel)"
        return text

    def to_json(self):
        record = {key: value for key, value in asdict(self).items() if value is not None and key != "source"}
        if self.arcsec_range is not None:
            record["arcsec_range"] = list(self.arcsec_range)
        return record

    @classmethod
    def from_json(cls, record, source="recorded"):
        known = {key: record[key] for key in ("petro_radii", "image_size", "band", "scale_factor", "data_release")
                 if record.get(key) is not None}
        arcsec = record.get("arcsec_range")
        return cls(**known, arcsec_range=tuple(arcsec) if arcsec else None, source=source)


# The seed's cutouts: 512 px at 0.01 x petroR90_g arcsec/pixel.
SEED_FIELD = FieldOfView(5.12, 512, "g", 0.01, source="assumed")
# Galaxy Zoo 1's frames: 423 px at 0.024 x petroR90_r arcsec/pixel (Lintott et al. 2008).
GALAXY_ZOO_1_FIELD = FieldOfView(10.152, 423, "r", 0.024, "DR7", source="documented")


def recut_frame(image, frame_field, target_field, size):
    """A frame of ``frame_field`` (a PIL image) as it would look cut at
    ``target_field``: the matching centre, resampled to ``size`` pixels (uint8).
    Only a narrower field can be cut from a frame."""
    import numpy as np
    from PIL import Image

    fraction = target_field.petro_radii / frame_field.petro_radii
    if fraction > 1:
        raise UsageError(f"a {frame_field.describe()} frame holds no {target_field.describe()} field")
    side_x, side_y = image.width * fraction, image.height * fraction
    box = ((image.width - side_x) / 2, (image.height - side_y) / 2,
           (image.width + side_x) / 2, (image.height + side_y) / 2)
    return np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC, box=box), dtype=np.uint8)


def write_dataset_record(field, extra=None):
    """The text of ``dataset.json`` for a data directory (written by storage)."""
    return json.dumps({"field_of_view": field.to_json(), **(extra or {})}, indent=2) + "\n"


def read_dataset_record(directory):
    """The recorded field of a data directory, or None when it has no dataset.json."""
    path = Path(directory) / DATASET_FILE
    if not path.is_file():
        return None
    try:
        return FieldOfView.from_json(json.loads(path.read_text())["field_of_view"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataFileError(f"{path}: unreadable field of view ({error}); delete it to fall back to the seed's "
                         "defaults, or write it again") from None


def assume(field, what, reason):
    """``field`` marked as assumed, after a note naming the assumption."""
    note(f"{what}: {reason}; assuming {field.describe()} (give --field-of-view, in petroR90 across, if that is "
         "wrong)")
    return FieldOfView(**{**asdict(field), "source": "assumed"})


def documented(field, what):
    note(f"{what}: taking the frames as {field.describe()}")
    return field


# --------------------------------------------------------------------------- the crop policy


@dataclass(frozen=True)
class CropPolicy:
    """Which centre fraction of each frame a network is shown: the one answer
    for training, evaluate, predict and classify.

    ``view_petro_radii`` is the sky the network looks at, in petroR90 across
    (None: a network that takes its frames as they are, like the seed's); each
    frame's crop is that view over the frame's own field, at most 1.
    ``fixed_crop`` is what a frame gets when no view applies or its field is
    unknown (the trained crop of a model); ``override`` (``--crop``) replaces
    every crop. ``owner`` and ``trained_field`` only name things in notes.
    """

    view_petro_radii: float = None
    fixed_crop: float = 1.0
    override: float = None
    owner: str = "the network"
    trained_field: float = None

    def crops(self, frames, what="input"):
        """One crop per frame of ``frames`` (anything with ``field``,
        ``row_fields`` and a length, such as a ``GalaxyData``), as a float array."""
        count = len(frames)
        if self.override is not None:
            return np.full(count, float(self.override))
        if self.view_petro_radii is None:
            return np.full(count, float(self.fixed_crop))
        if frames.row_fields is not None:
            return np.minimum(1.0, self.view_petro_radii / np.asarray(frames.row_fields, dtype=float))
        if frames.field is None:
            trained = f" ({self.trained_field:.4g} x petroR90 across)" if self.trained_field else ""
            note(f"{what}: field of view unknown; assuming frames like the training data of {self.owner}{trained}, "
                 f"crop {self.fixed_crop:g} (give --field-of-view, in petroR90 across, if that is wrong)")
            return np.full(count, float(self.fixed_crop))
        if self.view_petro_radii > frames.field.petro_radii * 1.02:
            note(f"{what} shows {frames.field.petro_radii:.4g} x petroR90 across, less than the "
                 f"{self.view_petro_radii:.4g} {self.owner} looks at; it sees the whole frame, the galaxy larger "
                 "than in training")
        return np.full(count, frames.field.crop_for(self.view_petro_radii))
