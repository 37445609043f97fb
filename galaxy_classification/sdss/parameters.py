"""Validation of the parameters that describe a galaxy sample.

Every check runs before any network request or file write, and every error is a
``ValueError`` that names the parameter and says what is allowed, so a typo
never costs a download or an existing data set.
"""

import math
import numbers
import re
from dataclasses import dataclass

from galaxy_classification.errors import UsageError

GALAXY_TYPES = ("both", "spiral", "elliptical")
DATA_RELEASE_PATTERN = re.compile(r"DR([0-9]{1,3})", re.IGNORECASE)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 2048
MAX_GALAXIES = 500_000  # SkyServer's row limit for one query


@dataclass(frozen=True)
class SampleParameters:
    """A validated description of the sample to fetch or generate."""

    n_galaxies: int
    galaxy_type: str
    lower_z_limit: float
    upper_z_limit: float
    lower_flux_limit: float
    upper_flux_limit: float
    data_release: str
    image_data: bool
    image_scale_factor: float
    image_size: int = 512


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_integer(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise UsageError(f"{name} must be a positive integer (1 or more), got {value!r}")
    return int(value)


def finite_number(name, value, minimum=None):
    if not _is_number(value) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


def number_range(lower_name, lower, upper_name, upper):
    """Check a (lower, upper) pair of non-negative limits, lower < upper."""
    lower = finite_number(lower_name, lower, minimum=0)
    upper = finite_number(upper_name, upper, minimum=0)
    if not lower < upper:
        raise UsageError(
            f"{lower_name} ({lower:g}) must be smaller than {upper_name} ({upper:g}); "
            "the limits look reversed or equal"
        )
    return lower, upper


def galaxy_type_name(value):
    if value not in GALAXY_TYPES:
        raise UsageError(f"galaxy_type must be one of {', '.join(map(repr, GALAXY_TYPES))}, got {value!r}")
    return value


def data_release_name(value):
    """'DR15' (or 'dr15') -> 'DR15'; anything else is refused."""
    match = DATA_RELEASE_PATTERN.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise UsageError(f"data_release must be 'DR' followed by digits, e.g. 'DR15' or 'DR17', got {value!r}")
    return f"DR{int(match.group(1))}"


def validate_sample_parameters(
    n_galaxies,
    galaxy_type,
    lower_z_limit,
    upper_z_limit,
    lower_flux_limit,
    upper_flux_limit,
    data_release,
    image_data,
    image_scale_factor,
    image_size=512,
):
    """Return a :class:`SampleParameters`, or raise ``ValueError`` naming the bad parameter."""
    n_galaxies = positive_integer("n_galaxies", n_galaxies)
    if n_galaxies > MAX_GALAXIES:
        raise UsageError(f"n_galaxies must be at most {MAX_GALAXIES:,} (SkyServer returns at most that many rows a "
                         f"query; write larger samples in several runs), got {n_galaxies}")
    galaxy_type = galaxy_type_name(galaxy_type)
    lower_z, upper_z = number_range("lower_z_limit", lower_z_limit, "upper_z_limit", upper_z_limit)
    lower_flux, upper_flux = number_range(
        "lower_flux_limit", lower_flux_limit, "upper_flux_limit", upper_flux_limit
    )
    data_release = data_release_name(data_release)
    if not isinstance(image_data, bool):
        raise UsageError(f"image_data must be True or False, got {image_data!r}")
    scale = finite_number("image_scale_factor", image_scale_factor)
    if scale <= 0:
        raise UsageError(f"image_scale_factor must be a positive number, got {image_scale_factor!r}")
    size = positive_integer("image_size", image_size)
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise UsageError(f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {size}")
    return SampleParameters(
        n_galaxies, galaxy_type, lower_z, upper_z, lower_flux, upper_flux, data_release, image_data, scale, size
    )


def class_counts(n_galaxies, galaxy_type):
    """How many spirals and ellipticals a sample holds: 'both' is half each
    (the odd one out is a spiral)."""
    if galaxy_type == "spiral":
        return n_galaxies, 0
    if galaxy_type == "elliptical":
        return 0, n_galaxies
    n_elliptical = n_galaxies // 2
    return n_galaxies - n_elliptical, n_elliptical
