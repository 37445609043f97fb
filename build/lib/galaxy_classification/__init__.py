"""Shared plumbing behind the two scripts users run, ``sdss_query.py`` and
``quick_cnn_trainer.py``.

Modules (one job each):

- ``parameters``  validation of the sample parameters, before any I/O
- ``config``      service URLs and timeouts, overridable by environment variables
- ``catalogue``   SQL building, parsing service responses, label rules
- ``skyserver``   HTTP: login, SQL search, CasJobs, cutout fetch (no files)
- ``cutouts``     concurrent, retrying, cached download of many cutouts
- ``sdss_sample`` the SDSS route of sdss_query: query, labels, cutouts, files
- ``synthetic``   the offline SDSS-like sky used by the demo and the tests
- ``storage``     atomic writes, the three data files, reading ``--data``

Nothing here imports TensorFlow at import time.
"""

CLASS_NAMES = ("spiral", "elliptical")  # label 0, label 1
SPIRAL, ELLIPTICAL = 0, 1
