"""The offline synthetic sky: SDSS-like spirals and ellipticals, no network needed.

``create_synthetic_datafiles(sample, out_dir, seed)`` writes the same three files
as the SDSS path (``galaxy_data.csv``, ``galaxy_images.npy``,
``galaxy_labels.npy``), with the same columns, shapes, dtypes and row alignment,
so the demo and the tests run anywhere. Users reach it through

    python sdss_query.py --synthetic --n-galaxies 400 --seed 42

How a galaxy is made, in the order the code does it:

1. Catalogue. Redshift and g-band Petrosian flux are drawn inside the
   requested limits; the luminosity they imply sets the physical size through a
   size-luminosity relation with scatter, and a flat LCDM cosmology turns it
   into arcseconds, so angular size shrinks with redshift. ``petroR90_g`` is
   measured on the model's own circular-aperture growth curve (SDSS Petrosian
   definition, seeing added in quadrature), and the likelihood columns are drawn
   so that ``label_rules.LIKELIHOOD`` gives the intended class.
2. Image. The cutout spans ``image_size * image_scale_factor * petroR90_g``
   arcseconds, as the SDSS cutout service would serve it. The sky is rendered in
   nanomaggies at about SDSS's native 0.396"/pixel (the resolution the real
   pixels have), blurred by a double-Gaussian PSF, given sky and photon noise,
   mapped to 8 bits with the asinh colour stretch of Lupton et al. (2004) and
   resampled to ``image_size`` pixels, as the cutout service does.
   Ellipticals are Sersic n~4 profiles, redder; spirals an exponential disc with
   a small bulge, 2-4 logarithmic arms and clumpy blue star-forming knots, at a
   random inclination (arms fade away towards edge-on, where a dust lane shows).
   Colours overlap between the classes (red spirals, blue ellipticals), and
   stars and neighbouring galaxies appear in some frames.

Every galaxy has its own random generator, derived from ``(seed, index)``, so a
seed gives byte-identical files and a galaxy does not depend on its neighbours
in the file. Speed: ``python bench/bench_synthetic.py``.
"""

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage, special

from galaxy_classification import CLASS_NAMES, ELLIPTICAL, SPIRAL
from galaxy_classification.data import storage
from galaxy_classification.data.field_of_view import FieldOfView
from galaxy_classification.sdss import parameters
from galaxy_classification.sdss.label_rules import LIKELIHOOD

# --- instrument: SDSS imaging camera, g r i ---------------------------------------------
SDSS_PIXEL_ARCSEC = 0.396
# Images are kept in nanomaggies per native pixel: flux per arcsec^2 times this.
NATIVE_PIXEL_AREA = np.float32(SDSS_PIXEL_ARCSEC ** 2)
# Sky noise per native pixel in nanomaggies (sky ~21.9, 20.9, 20.2 mag/arcsec^2)
# and nanomaggies per photo-electron (nMgyPerCount / gain), for photon noise.
SKY_SIGMA_NMGY = np.array([0.020, 0.028, 0.045], dtype=np.float32)
NMGY_PER_ELECTRON = np.array([0.0010, 0.0011, 0.0014], dtype=np.float32)
SEEING_FWHM_RANGE = (1.1, 1.6)  # arcsec, r band; SDSS median ~1.3"
SEEING_BAND_FACTOR = np.array([1.06, 1.0, 0.96])  # seeing is worse in the blue
PSF_WING_WEIGHT, PSF_WING_WIDTH = 0.1, 2.2  # fraction of light, sigma ratio

# asinh colour stretch (Lupton et al. 2004) as in the SDSS gri composites: g, r, i
# go to blue, green, red; the flux scales (per nanomaggy per native pixel) and the
# small per-band black level are tuned so that sky noise (~4 of 255), sky level
# and the colour and brightness of galaxy cores match real SDSS cutouts.
RGB_PLANE = (2, 1, 0)
RGB_SCALE = np.array([1.12, 0.56, 0.45], dtype=np.float32)
RGB_BLACK_LEVEL = np.array([0.011, 0.017, 0.020], dtype=np.float32)
STRETCH_Q = 5.0
JPEG_QUALITY = 75

# --- cosmology: flat LCDM -----------------------------------------------------------
HUBBLE_DISTANCE_MPC = 299792.458 / 70.0
OMEGA_MATTER = 0.3
MINIMUM_SIZE_REDSHIFT = 0.005  # keeps angular sizes finite when lower_z_limit is 0

# --- SDSS-looking ids and footprint ---------------------------------------------------
FOOTPRINT_RA, FOOTPRINT_SIN_DEC = (110.0, 260.0), (math.sin(math.radians(-5)), math.sin(math.radians(65)))


@dataclass
class Component:
    """One smooth light profile: Sersic, elliptical isophotes, fluxes in g r i (nanomaggies)."""

    flux: np.ndarray
    effective_radius: float  # arcsec, along the major axis
    sersic_index: float
    axis_ratio: float
    angle: float  # radians, major axis from +x towards +y


@dataclass
class SpiralStructure:
    """Arms and star-forming knots of a disc, in the disc plane."""

    n_arms: int
    pitch: float  # radians
    chirality: int  # +1 or -1: which way the arms wind
    phase: float
    strength: np.ndarray  # arm contrast per band (stronger in the blue)
    width_power: float  # higher -> narrower arms
    inner_radius: float  # arcsec: arms start outside the bulge
    knot_flux: np.ndarray  # total flux in knots, g r i
    n_knots: int
    dust_depth: float  # optical depth of the mid-plane dust lane in g (edge-on only)


@dataclass
class SyntheticGalaxy:
    label: int
    row: dict
    components: list
    seeing_fwhm: float
    spiral: SpiralStructure = None
    disc_cos_inclination: float = 1.0


# ======================================================================================
# Writing the files
# ======================================================================================

def create_synthetic_datafiles(sample, out_dir, seed=42, shard_size=None):
    """Generate ``sample`` (a :class:`parameters.SampleParameters`) into ``out_dir``.

    Returns ``out_dir`` as a ``pathlib.Path``. ``seed=None`` draws a fresh one.
    """
    from tqdm.auto import tqdm

    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    galaxies = draw_sample(sample, seed)
    table = pd.DataFrame([galaxy.row for galaxy in galaxies], columns=CATALOGUE_COLUMNS)
    labels = LIKELIHOOD.labels(table)
    intended = np.array([galaxy.label for galaxy in galaxies], dtype=np.int64)
    if not np.array_equal(labels, intended):
        raise RuntimeError("synthetic likelihood columns disagree with the intended classes (a bug)")
    table["galaxy_type"] = [CLASS_NAMES[label] for label in labels]

    images = None
    shape = (sample.image_size, sample.image_size, 3)
    if sample.image_data:
        images = (
            render_image(galaxy, sample.image_size, sample.image_scale_factor, galaxy_rng(seed, index, "image"))
            for index, galaxy in enumerate(galaxies)
        )

    def progress(iterable):
        return tqdm(iterable, total=len(galaxies), desc="synthetic galaxies", unit="galaxy")

    field = FieldOfView.from_cutouts(sample.image_scale_factor, sample.image_size, "g", "synthetic",
                                     table["petroR90_g"])
    return storage.write_sharded_datafiles(out_dir, table, labels, images=images, image_shape=shape,
                                           progress=progress, field=field, shard_size=shard_size)


CATALOGUE_COLUMNS = ["objid", "ra", "dec", "petroR90_g", "petroFlux_g", "specObjID",
                     "lnLDeV_g", "lnLExp_g", "lnLDeV_r", "lnLExp_r", "z", "cutout_scale"]
_STREAMS = {"order": 0, "catalogue": 1, "image": 2}


def galaxy_rng(seed, index, stream):
    """The generator of one galaxy's catalogue or image: depends on (seed, index) only."""
    return np.random.default_rng([seed, _STREAMS[stream], index])


def draw_sample(sample, seed):
    """The catalogue of the whole sample, classes shuffled, as :class:`SyntheticGalaxy` objects."""
    n_spirals, n_ellipticals = parameters.class_counts(sample.n_galaxies, sample.galaxy_type)
    classes = np.array([SPIRAL] * n_spirals + [ELLIPTICAL] * n_ellipticals)
    classes = np.random.default_rng([seed, _STREAMS["order"]]).permutation(classes)
    return [draw_galaxy(sample, int(label), galaxy_rng(seed, index, "catalogue")) for index, label in enumerate(classes)]


# ======================================================================================
# The catalogue: redshift, flux, size, colour, structure
# ======================================================================================

def comoving_distance_mpc(z):
    redshifts = np.linspace(0.0, z, 257)
    inverse_e = 1.0 / np.sqrt(OMEGA_MATTER * (1 + redshifts) ** 3 + 1 - OMEGA_MATTER)
    return HUBBLE_DISTANCE_MPC * float(np.sum((inverse_e[1:] + inverse_e[:-1]) * 0.5 * np.diff(redshifts)))


def draw_flux(rng, lower, upper):
    """petroFlux_g in nanomaggies, Euclidean counts dN/dF ~ F^-2.5 (more faint than bright)."""
    u = rng.uniform()
    a, b = lower ** -1.5 if lower > 0 else None, upper ** -1.5
    if a is None:  # a zero lower limit: fall back to uniform in log over three decades
        return float(upper * 10 ** (-3 * u))
    return float((a + u * (b - a)) ** (-1 / 1.5))


def draw_galaxy(sample, label, rng):
    z = float(np.clip(round(rng.uniform(sample.lower_z_limit, sample.upper_z_limit), 6),
                      sample.lower_z_limit, sample.upper_z_limit))
    petro_flux = float(np.clip(round(draw_flux(rng, sample.lower_flux_limit, sample.upper_flux_limit), 3),
                               sample.lower_flux_limit, sample.upper_flux_limit))
    size_z = max(z, MINIMUM_SIZE_REDSHIFT)
    comoving = comoving_distance_mpc(size_z)
    luminosity_distance_pc = comoving * (1 + size_z) * 1e6
    angular_distance_kpc = comoving / (1 + size_z) * 1e3
    absolute_g = 22.5 - 2.5 * math.log10(max(petro_flux, 1e-3)) - 5 * math.log10(luminosity_distance_pc / 10)
    log_luminosity = -0.4 * (absolute_g + 21.0)  # dex relative to M_g = -21
    arcsec_per_kpc = 206264.806 / angular_distance_kpc

    if label == ELLIPTICAL:
        components, spiral, cos_i = _elliptical_structure(rng, z, log_luminosity, arcsec_per_kpc)
    else:
        components, spiral, cos_i = _spiral_structure(rng, z, log_luminosity, arcsec_per_kpc)

    seeing = float(rng.uniform(*SEEING_FWHM_RANGE))
    radius_90, petro_fraction = petrosian_r90(components, seeing * SEEING_BAND_FACTOR[0])
    # Scale the model so that its g-band Petrosian flux is the catalogue value.
    total_g = sum(component.flux[0] for component in components)
    if spiral is not None:
        total_g += spiral.knot_flux[0]
    normalisation = petro_flux / petro_fraction / total_g
    for component in components:
        component.flux = component.flux * normalisation
    if spiral is not None:
        spiral.knot_flux = spiral.knot_flux * normalisation

    lnl_dev, lnl_exp = _likelihoods(rng, label, petro_flux)
    row = {
        "objid": str(_photo_objid(rng)),
        "ra": round(float(rng.uniform(*FOOTPRINT_RA)), 6),
        "dec": round(math.degrees(math.asin(rng.uniform(*FOOTPRINT_SIN_DEC))), 6),
        "petroR90_g": round(radius_90, 4),
        "petroFlux_g": petro_flux,
        "specObjID": str(_spec_objid(rng)),
        "lnLDeV_g": lnl_dev,
        "lnLExp_g": lnl_exp,
        "z": z,
        "cutout_scale": sample.image_scale_factor * round(radius_90, 4),
    }
    # drawn last, so every other value of a seed's galaxy stays as it was before r-band fits existed
    row["lnLDeV_r"], row["lnLExp_r"] = _r_band_likelihoods(rng, label, petro_flux, lnl_dev)
    return SyntheticGalaxy(label, row, components, seeing, spiral, cos_i)


def _colours(rng, z, red):
    """Observed (g-r, r-i): the red sequence or the blue cloud, shifted redder with redshift."""
    if red:
        g_r = 0.74 + 2.0 * z + rng.normal(0, 0.06)
        r_i = 0.38 + 0.5 * z + rng.normal(0, 0.04)
    else:
        g_r = 0.42 + 1.2 * z + rng.normal(0, 0.12)
        r_i = 0.26 + 0.4 * z + rng.normal(0, 0.05)
    return g_r, r_i


def _band_fluxes(r_flux, g_r, r_i):
    return np.array([r_flux * 10 ** (-0.4 * g_r), r_flux, r_flux * 10 ** (0.4 * r_i)])


def _elliptical_structure(rng, z, log_luminosity, arcsec_per_kpc):
    radius_kpc = 10 ** (0.6 + 0.35 * log_luminosity + rng.normal(0, 0.15))
    g_r, r_i = _colours(rng, z, red=True)
    if rng.uniform() < 0.12:  # blue ellipticals: recent star formation
        g_r -= rng.uniform(0.25, 0.5)
        r_i -= rng.uniform(0.05, 0.12)
    component = Component(
        flux=_band_fluxes(1.0, g_r, r_i),
        effective_radius=float(np.clip(radius_kpc, 0.5, 25) * arcsec_per_kpc),
        sersic_index=float(np.clip(rng.normal(4.0, 0.4), 3.0, 5.5)),
        axis_ratio=float(np.clip(rng.normal(0.75, 0.15), 0.35, 1.0)),
        angle=float(rng.uniform(0, math.pi)),
    )
    return [component], None, 1.0


def _spiral_structure(rng, z, log_luminosity, arcsec_per_kpc):
    disc_radius = float(np.clip(10 ** (0.75 + 0.25 * log_luminosity + rng.normal(0, 0.18)), 1.0, 30)) * arcsec_per_kpc
    bulge_to_total = rng.uniform(0.05, 0.35)
    disc_g_r, disc_r_i = _colours(rng, z, red=rng.uniform() < 0.2)  # some red, passive discs
    bulge_g_r, bulge_r_i = _colours(rng, z, red=True)
    cos_i = float(rng.uniform(0, 1))  # isotropic orientations
    thickness = rng.uniform(0.1, 0.2)
    disc_axis_ratio = math.sqrt(cos_i ** 2 + thickness ** 2 * (1 - cos_i ** 2))
    angle = float(rng.uniform(0, math.pi))
    knot_fraction = rng.uniform(0.04, 0.14) * max(cos_i, 0.2)
    disc = Component(_band_fluxes((1 - bulge_to_total) * (1 - knot_fraction), disc_g_r, disc_r_i),
                     disc_radius, 1.0, disc_axis_ratio, angle)
    bulge = Component(_band_fluxes(bulge_to_total, bulge_g_r, bulge_r_i),
                      disc_radius * rng.uniform(0.1, 0.25), float(rng.uniform(1.5, 3.5)),
                      max(disc_axis_ratio, float(rng.uniform(0.65, 1.0))), angle)
    strength = rng.uniform(0.45, 0.9)
    spiral = SpiralStructure(
        n_arms=int(rng.choice([2, 3, 4], p=[0.5, 0.3, 0.2])),
        pitch=math.radians(rng.uniform(12, 30)),
        chirality=int(rng.choice([-1, 1])),
        phase=float(rng.uniform(0, 2 * math.pi)),
        strength=strength * np.array([1.0, 0.85, 0.7]),
        width_power=float(rng.uniform(2, 6)),
        inner_radius=bulge.effective_radius * 2.0,
        knot_flux=_band_fluxes((1 - bulge_to_total) * knot_fraction, disc_g_r - 0.35, disc_r_i - 0.15),
        n_knots=int(rng.integers(10, 50)),
        dust_depth=float(rng.uniform(0.5, 1.5) * max(0.0, (0.3 - cos_i) / 0.3)),
    )
    return [disc, bulge], spiral, cos_i


def _likelihoods(rng, label, petro_flux):
    """lnLDeV_g, lnLExp_g: with the r-band pair, what label_rules.LIKELIHOOD
    calls ``label``; brighter galaxies have larger |ln L| (more pixels, same
    model mismatch)."""
    if label == ELLIPTICAL:
        lnl_dev = -min(rng.exponential(40 + 0.4 * petro_flux), 890.0)
        lnl_exp = max(lnl_dev - 0.3 - rng.exponential(150), -998.0)
    else:
        lnl_dev = -2001.0 - rng.exponential(3000 + 10 * petro_flux)
        lnl_exp = -min(rng.exponential(150 + 0.8 * petro_flux), 1990.0)
    return round(float(lnl_dev), 3), round(float(lnl_exp), 3)


def _r_band_likelihoods(rng, label, petro_flux, lnl_dev_g):
    """lnLDeV_r, lnLExp_r: an elliptical's bulge fit wins in r too (the rule's
    test); a spiral's r-band fits are as bad as its g-band ones."""
    if label == ELLIPTICAL:
        lnl_exp = -min(rng.exponential(150 + 0.5 * petro_flux), 990.0) - 0.3
        lnl_dev = lnl_exp + 0.3 + rng.exponential(150)
        return round(float(min(lnl_dev, -0.01)), 3), round(float(lnl_exp), 3)
    lnl_dev = lnl_dev_g * rng.uniform(0.8, 1.2)
    lnl_exp = -rng.exponential(150 + 0.8 * petro_flux)
    return round(float(lnl_dev), 3), round(float(max(lnl_exp, lnl_dev + 1.0)), 3)


def _photo_objid(rng):
    """A DR8+ photometric objID: skyVersion 2, rerun 301, run, camcol, field, object."""
    run, camcol = int(rng.integers(94, 8163)), int(rng.integers(1, 7))
    field_number, object_number = int(rng.integers(11, 800)), int(rng.integers(1, 1500))
    return (2 << 59) | (301 << 48) | (run << 32) | (camcol << 29) | (field_number << 16) | object_number


def _spec_objid(rng):
    """A DR8+ specObjID: plate, fibre, MJD and run2d packed into 64 unsigned bits.
    BOSS/eBOSS plates >= 8192 give ids above 2**63, as real ones do."""
    if rng.uniform() < 0.6:  # SDSS-I/II legacy plates, run2d '26'
        plate, fibers, mjd, run2d = int(rng.integers(266, 2975)), 640, int(rng.integers(51600, 54600)), 26
    else:  # BOSS/eBOSS plates, run2d 'v5_10_0'
        plate, fibers, mjd, run2d = int(rng.integers(3586, 11500)), 1000, int(rng.integers(55000, 58600)), 1000
    fiber = int(rng.integers(1, fibers + 1))
    return (plate << 50) | (fiber << 38) | ((mjd - 50000) << 24) | (run2d << 10)


# ======================================================================================
# Light profiles and the Petrosian radius
# ======================================================================================

def sersic_b(n):
    return float(special.gammaincinv(2 * n, 0.5))


def sersic_surface_brightness(component, x, y, band_fluxes=None, softening=0.0):
    """Surface brightness (flux per arcsec^2) at offsets x, y (arcsec) from the centre.

    Returns shape (3, *x.shape) for the g r i fluxes, or x.shape when
    ``band_fluxes`` is a scalar.
    """
    n, radius, q = component.sersic_index, component.effective_radius, component.axis_ratio
    cos_a, sin_a = math.cos(component.angle), math.sin(component.angle)
    major = x * cos_a + y * sin_a
    minor = (-x * sin_a + y * cos_a) / q
    scaled = np.sqrt(major * major + minor * minor + softening * softening) / radius
    b = sersic_b(n)
    if n == 1.0:
        shape = np.exp(-b * scaled)
    elif abs(n - 4.0) < 1e-12:
        shape = np.exp(-b * np.sqrt(np.sqrt(scaled)))
    else:
        shape = np.exp(-b * scaled ** (1.0 / n))
    peak = b ** (2 * n) / (2 * math.pi * n * q * radius ** 2 * special.gamma(2 * n))
    fluxes = component.flux if band_fluxes is None else band_fluxes
    return np.multiply.outer(np.asarray(fluxes, dtype=np.float32) * np.float32(peak), shape.astype(np.float32))


def petrosian_r90(components, seeing_fwhm):
    """(petroR90 in arcsec, Petrosian flux / total flux) of the g-band model.

    Follows the SDSS definition on circular apertures: the Petrosian radius is
    where the surface brightness in an annulus 0.8-1.25 r is 0.2 of the mean
    within r; the Petrosian flux is the light inside twice that radius, and
    R90 encloses 90 % of it. The PSF is added in quadrature (exact for
    Gaussians), since SDSS measures the seeing-blurred image.
    """
    largest = max(c.effective_radius for c in components)
    radii = np.geomspace(1e-3 * largest, 40 * largest, 600)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = np.outer(radii, np.cos(angles))
    y = np.outer(radii, np.sin(angles))
    profile = sum(sersic_surface_brightness(c, x, y, band_fluxes=c.flux[0]) for c in components).mean(axis=1)
    profile = profile.astype(float)
    ring = 2 * np.pi * radii * profile
    enclosed = np.concatenate([[0.0], np.cumsum(0.5 * (ring[1:] + ring[:-1]) * np.diff(radii))])
    enclosed += np.pi * radii[0] ** 2 * profile[0]  # the tiny disc inside the first radius

    def light_within(r):
        return np.interp(r, radii, enclosed)

    annulus = (light_within(1.25 * radii) - light_within(0.8 * radii)) / (np.pi * (1.25 ** 2 - 0.8 ** 2) * radii ** 2)
    ratio = annulus / (enclosed / (np.pi * radii ** 2))
    beyond = np.nonzero((ratio < 0.2) & (radii > 0.1 * largest))[0]
    petrosian_radius = radii[beyond[0]] if len(beyond) else radii[-1] / 2
    petrosian_flux = light_within(2 * petrosian_radius)
    radius_90 = float(np.interp(0.9 * petrosian_flux, enclosed, radii))
    sigma = seeing_fwhm / 2.3548
    total = sum(c.flux[0] for c in components)
    return math.hypot(radius_90, 2.146 * sigma), float(petrosian_flux / total)


# ======================================================================================
# The image
# ======================================================================================

def render_image(galaxy, image_size, image_scale_factor, rng):
    """One (image_size, image_size, 3) uint8 gri colour cutout of ``galaxy``."""
    output_scale = image_scale_factor * galaxy.row["petroR90_g"]  # arcsec per output pixel
    field_arcsec = image_size * output_scale
    # Render at the native SDSS resolution (or the output's, if coarser): the real
    # pixels carry no finer detail, and resampling up is what the cutout service does.
    n_pixels = int(min(image_size, max(8, math.ceil(field_arcsec / SDSS_PIXEL_ARCSEC))))
    pixel = field_arcsec / n_pixels
    psf_sigmas = galaxy.seeing_fwhm * SEEING_BAND_FACTOR / 2.3548 / pixel
    pad = int(math.ceil(4 * PSF_WING_WIDTH * psf_sigmas.max())) + 1
    grid = (np.arange(n_pixels + 2 * pad, dtype=np.float32) - (n_pixels + 2 * pad - 1) / 2) * np.float32(pixel)
    x, y = grid[np.newaxis, :], grid[:, np.newaxis]

    sky = _render_galaxy(galaxy, x, y, pixel, rng)
    _add_stars(sky, field_arcsec, x, y, pixel, rng)
    _add_neighbours(sky, galaxy, field_arcsec, x, y, pixel, rng)
    sky = _convolve_psf(sky, psf_sigmas)[:, pad:pad + n_pixels, pad:pad + n_pixels]
    sky = _add_noise(sky, pixel, rng)
    colour = Image.fromarray(asinh_rgb(sky))
    if n_pixels != image_size:
        colour = colour.resize((image_size, image_size), Image.BICUBIC)
    return as_served_jpeg(colour)


def as_served_jpeg(image):
    """The cutout service sends JPEGs; their quantisation tables match quality 75."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded if decoded.mode == "RGB" else decoded.convert("RGB"))


def _render_galaxy(galaxy, x, y, pixel, rng):
    softening = 0.3 * pixel  # the pixel-integrated cusp of a Sersic profile is finite
    components = galaxy.components
    if galaxy.spiral is None:
        image = sersic_surface_brightness(components[0], x, y, softening=softening)
    else:
        disc, bulge = components
        image = sersic_surface_brightness(disc, x, y, softening=softening)
        image *= _arm_modulation(galaxy, disc, x, y)
        image += sersic_surface_brightness(bulge, x, y, softening=softening)
        _add_knots(image, galaxy, disc, x, y, pixel, rng)
        if galaxy.spiral.dust_depth > 0:
            image *= _dust_lane(galaxy, disc, x, y)
    return image * NATIVE_PIXEL_AREA


def _disc_coordinates(disc, x, y):
    """Radius (arcsec) and azimuth in the plane of the disc, for sky offsets x, y."""
    cos_a, sin_a = math.cos(disc.angle), math.sin(disc.angle)
    major = x * cos_a + y * sin_a
    minor = (-x * sin_a + y * cos_a) / disc.axis_ratio
    return np.sqrt(major * major + minor * minor), np.arctan2(minor, major)


def _arm_phase(spiral, radius, azimuth):
    winding = np.log(np.maximum(radius, 1e-3) / spiral.inner_radius) / math.tan(spiral.pitch)
    return spiral.n_arms * (azimuth - spiral.chirality * winding) + spiral.phase


def _arm_modulation(galaxy, disc, x, y):
    """Logarithmic arms: a mean-preserving modulation of the disc, per band.

    Arms are drawn in the disc plane and projected; their contrast fades as the
    disc turns edge-on, where the line of sight crosses every arm."""
    spiral = galaxy.spiral
    radius, azimuth = _disc_coordinates(disc, x, y)
    wave = ((1 + np.cos(_arm_phase(spiral, radius, azimuth))) * 0.5) ** spiral.width_power
    wave_mean = special.gamma(spiral.width_power + 0.5) / (math.sqrt(math.pi) * special.gamma(spiral.width_power + 1))
    visibility = float(np.clip((galaxy.disc_cos_inclination - 0.15) / 0.35, 0, 1))
    onset = 1 - np.exp(-((radius / spiral.inner_radius) ** 2))
    contrast = (wave / wave_mean - 1) * onset * visibility
    return (1 + np.multiply.outer(spiral.strength.astype(np.float32), contrast.astype(np.float32))).astype(np.float32)


def _add_knots(image, galaxy, disc, x, y, pixel, rng):
    """Unresolved blue star-forming knots strung along the arms."""
    spiral = galaxy.spiral
    scale_length = disc.effective_radius / 1.678
    radius = rng.gamma(2.0, scale_length, spiral.n_knots)
    radius = np.maximum(radius, spiral.inner_radius * rng.uniform(0.8, 1.5, spiral.n_knots))
    arm = rng.integers(0, spiral.n_arms, spiral.n_knots)
    winding = np.log(radius / spiral.inner_radius) / math.tan(spiral.pitch)
    azimuth = spiral.chirality * winding + (2 * np.pi * arm - spiral.phase) / spiral.n_arms
    azimuth += rng.normal(0, 0.12, spiral.n_knots)
    in_plane_x, in_plane_y = radius * np.cos(azimuth), radius * np.sin(azimuth) * disc.axis_ratio
    cos_a, sin_a = math.cos(disc.angle), math.sin(disc.angle)
    sky_x = in_plane_x * cos_a - in_plane_y * sin_a
    sky_y = in_plane_x * sin_a + in_plane_y * cos_a
    weights = rng.exponential(1.0, spiral.n_knots)
    fluxes = np.outer(spiral.knot_flux, weights / weights.sum())
    _deposit_points(image, sky_x, sky_y, fluxes, x, y, pixel)


def _dust_lane(galaxy, disc, x, y):
    """Mid-plane dust of a nearly edge-on disc: darker and redder along the major axis."""
    cos_a, sin_a = math.cos(disc.angle), math.sin(disc.angle)
    major = x * cos_a + y * sin_a
    minor = -x * sin_a + y * cos_a
    width = 0.25 * disc.axis_ratio * disc.effective_radius
    depth = np.exp(-0.5 * (minor / width) ** 2 - np.abs(major) / (2 * disc.effective_radius))
    optical_depth = galaxy.spiral.dust_depth * np.array([1.0, 0.75, 0.55], dtype=np.float32)
    return np.exp(-np.multiply.outer(optical_depth, depth.astype(np.float32)))


def _deposit_points(image, sky_x, sky_y, fluxes, x, y, pixel):
    """Add point sources (fluxes: (3, k)) to ``image`` with bilinear weights;
    the PSF convolution later gives them their shape."""
    origin_x, origin_y = float(x[0, 0]), float(y[0, 0])
    column = (np.asarray(sky_x) - origin_x) / pixel
    row = (np.asarray(sky_y) - origin_y) / pixel
    height, width = image.shape[1:]
    left, top = np.floor(column).astype(int), np.floor(row).astype(int)
    fraction_x, fraction_y = column - left, row - top
    per_pixel = np.asarray(fluxes, dtype=np.float32) / np.float32(pixel * pixel) * NATIVE_PIXEL_AREA
    for d_row, d_column, weight in (
        (0, 0, (1 - fraction_y) * (1 - fraction_x)), (0, 1, (1 - fraction_y) * fraction_x),
        (1, 0, fraction_y * (1 - fraction_x)), (1, 1, fraction_y * fraction_x),
    ):
        rows, columns = top + d_row, left + d_column
        inside = (rows >= 0) & (rows < height) & (columns >= 0) & (columns < width)
        for band in range(3):
            np.add.at(image[band], (rows[inside], columns[inside]), (per_pixel[band] * weight)[inside])


def _add_stars(image, field_arcsec, x, y, pixel, rng):
    """Foreground Milky Way stars: ~0.6 per square arcminute to g ~ 22.5."""
    n_stars = rng.poisson(0.6 * (field_arcsec / 60) ** 2)
    if n_stars == 0:
        return
    g_magnitude = np.maximum(22.5 - rng.exponential(2.2, n_stars), 13.0)
    g_r = rng.uniform(0.2, 1.45, n_stars)
    r_i = np.maximum(0.0, 0.65 * (g_r - 0.35)) + rng.normal(0, 0.05, n_stars)
    g_flux = 10 ** (-0.4 * (g_magnitude - 22.5))
    fluxes = np.stack([g_flux, g_flux * 10 ** (0.4 * g_r), g_flux * 10 ** (0.4 * (g_r + r_i))])
    half = field_arcsec / 2
    sky_x, sky_y = rng.uniform(-half, half, n_stars), rng.uniform(-half, half, n_stars)
    _deposit_points(image, sky_x, sky_y, fluxes, x, y, pixel)


def _add_neighbours(image, galaxy, field_arcsec, x, y, pixel, rng):
    """Faint background galaxies, and sometimes a companion at the same redshift."""
    n_background = rng.poisson(1.5 * (field_arcsec / 60) ** 2)
    half = field_arcsec / 2
    neighbours = []
    for _ in range(n_background):
        g_r, r_i = _colours(rng, min(galaxy.row["z"] * 2 + 0.2, 0.7), red=rng.uniform() < 0.4)
        flux = 10 ** (-0.4 * (rng.uniform(19.5, 23.0) - 22.5))
        position = rng.uniform(-half, half, 2)
        neighbours.append((position, Component(_band_fluxes(flux, g_r, r_i), float(rng.uniform(0.3, 1.5)),
                                               float(rng.uniform(1, 4)), float(rng.uniform(0.3, 1)),
                                               float(rng.uniform(0, math.pi)))))
    if rng.uniform() < (0.35 if galaxy.label == ELLIPTICAL else 0.2):  # ellipticals live in groups
        main = galaxy.components[0]
        g_r, r_i = _colours(rng, galaxy.row["z"], red=rng.uniform() < 0.5)
        distance = rng.uniform(1.1, 2.4) * galaxy.row["petroR90_g"]
        direction = rng.uniform(0, 2 * math.pi)
        flux = main.flux[1] * 10 ** rng.uniform(-1.5, -0.3)
        neighbours.append((distance * np.array([math.cos(direction), math.sin(direction)]),
                           Component(_band_fluxes(flux, g_r, r_i), main.effective_radius * rng.uniform(0.2, 0.6),
                                     float(rng.uniform(1, 4)), float(rng.uniform(0.4, 1)),
                                     float(rng.uniform(0, math.pi)))))
    for position, component in neighbours:
        _add_sersic_stamp(image, component, position, x, y, pixel)


def _add_sersic_stamp(image, component, position, x, y, pixel):
    """Add a small galaxy on the pixels within ~8 effective radii of it only."""
    reach = 8 * component.effective_radius + 2 * pixel
    columns = np.nonzero(np.abs(x[0] - position[0]) < reach)[0]
    rows = np.nonzero(np.abs(y[:, 0] - position[1]) < reach)[0]
    if len(columns) == 0 or len(rows) == 0:
        return
    block = np.s_[:, rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    stamp_x = x[:, columns[0]:columns[-1] + 1] - np.float32(position[0])
    stamp_y = y[rows[0]:rows[-1] + 1, :] - np.float32(position[1])
    image[block] += sersic_surface_brightness(component, stamp_x, stamp_y, softening=0.3 * pixel) * NATIVE_PIXEL_AREA


def _convolve_psf(image, psf_sigmas):
    """Double-Gaussian SDSS-like PSF: a core and a 10 % wing 2.2 times wider."""
    blurred = np.empty_like(image)
    for band in range(3):
        core = ndimage.gaussian_filter(image[band], psf_sigmas[band], mode="constant")
        wing = ndimage.gaussian_filter(core, psf_sigmas[band] * math.sqrt(PSF_WING_WIDTH ** 2 - 1), mode="constant")
        blurred[band] = (1 - PSF_WING_WEIGHT) * core + PSF_WING_WEIGHT * wing
    return blurred


def _add_noise(image, pixel, rng):
    """Sky and photon noise, in nanomaggies per native pixel, and a small sky-subtraction residual."""
    area_ratio = np.float32((pixel / SDSS_PIXEL_ARCSEC) ** 2)  # native pixels per internal pixel
    sky_variance = (SKY_SIGMA_NMGY ** 2)[:, None, None]
    photon_variance = np.maximum(image, 0) * NMGY_PER_ELECTRON[:, None, None]
    sigma = np.sqrt((sky_variance + photon_variance) / area_ratio)
    residual = rng.normal(0, 0.15, 3).astype(np.float32) * SKY_SIGMA_NMGY
    return image + sigma * rng.standard_normal(image.shape, dtype=np.float32) + residual[:, None, None]


def asinh_rgb(bands):
    """gri nanomaggy images (3, h, w) -> (h, w, 3) uint8, asinh stretch of Lupton et al. (2004).

    The stretch acts on the mean intensity and scales each band by the same
    factor, so colours are preserved from the faint outskirts to the bright
    (saturating) cores, as in the SDSS colour composites."""
    scaled = np.maximum(bands * RGB_SCALE[:, None, None] + RGB_BLACK_LEVEL[:, None, None], 0)
    intensity = np.maximum(scaled.mean(axis=0), np.float32(1e-6))
    factor = np.arcsinh(np.float32(STRETCH_Q) * intensity) / (np.float32(STRETCH_Q) * intensity)
    rgb = np.empty(bands.shape[1:] + (3,), dtype=np.uint8)
    for band, plane in enumerate(RGB_PLANE):
        rgb[:, :, plane] = np.clip(scaled[band] * factor * 255 + 0.5, 0, 255).astype(np.uint8)
    return rgb
