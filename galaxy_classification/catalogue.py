"""The galaxy catalogue: which galaxies are spirals and which are ellipticals.

The likelihood rule (the project's default, ``labels='likelihood'``) compares
the de Vaucouleurs (bulge, n=4) and exponential (disc, n=1) profile fits of
each galaxy in the g band, as SDSS's photometric pipeline reports them:

- elliptical: both fits valid (ln L > -999) and the de Vaucouleurs fit is
  better by more than 0.1 in ln L;
- spiral: the de Vaucouleurs fit is hopeless (ln L < -2000) and the
  exponential fit is better by more than 0.1.

The two tests are disjoint; galaxies passing neither are not in the sample.
The same conditions appear in SQL (``SPIRAL_CONDITION``/``ELLIPTICAL_CONDITION``)
and in Python (:func:`likelihood_labels`), so the synthetic sky and the SDSS
query agree on what a label means.
"""

import numpy as np

from . import ELLIPTICAL, SPIRAL

ELLIPTICAL_CONDITION = "g.lnLDeV_g > -999.0 AND g.lnLExp_g > -999.0 AND g.lnLDeV_g > g.lnLExp_g + 0.1"
SPIRAL_CONDITION = "g.lnLDeV_g < -2000.0 AND g.lnLDeV_g + 0.1 < g.lnLExp_g"


def likelihood_labels(catalogue):
    """Labels from the lnLDeV_g / lnLExp_g columns: 0 spiral, 1 elliptical, -1 neither."""
    deV = catalogue["lnLDeV_g"].to_numpy(dtype=float)
    exp = catalogue["lnLExp_g"].to_numpy(dtype=float)
    elliptical = (deV > -999.0) & (exp > -999.0) & (deV > exp + 0.1)
    spiral = (deV < -2000.0) & (deV + 0.1 < exp)
    labels = np.full(len(catalogue), -1, dtype=np.int64)
    labels[elliptical] = ELLIPTICAL
    labels[spiral] = SPIRAL
    return labels
