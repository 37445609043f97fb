"""TensorFlow without its start-up chatter.

Importing TensorFlow 2.16+ writes C++ log lines straight to the process's
standard error before Python can filter anything: absl's "All log messages
before absl::InitializeLog() is called are written to STDERR", the oneDNN
notice, CPU feature lines, some of them again when the first device is set
up. ``TF_CPP_MIN_LOG_LEVEL`` no longer hides those (it does hide what is
logged once TensorFlow runs, and is set to 2 unless the user chose). So :func:`import_keras`
starts Keras (and TensorFlow's devices) with file descriptor 2 pointed at
``/dev/null`` for that moment only, unless the user asked for the logs: by
setting ``TF_CPP_MIN_LOG_LEVEL`` to 0 or 1 (keep informational messages or
warnings), or with ``--verbose`` (:func:`show_logs`). 2 and 3, which ask
TensorFlow for less, get the quiet start too. Python exceptions are not affected: they are raised, not
printed, while the start-up runs.
"""

import contextlib
import os
import sys

_show_logs = False
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
                   "openvino": "openvino"}


def check_backend():
    """Refuse, before Keras starts, a ``KERAS_BACKEND`` that is not a Keras backend or is not installed."""
    import importlib.util

    from galaxy_classification.errors import UsageError

    name = os.environ.get("KERAS_BACKEND")
    if name is None:
        return
    if name not in BACKEND_MODULES:
        raise UsageError(f"KERAS_BACKEND={name!r} is not a Keras backend; use tensorflow (the default), jax or torch")
    if importlib.util.find_spec(BACKEND_MODULES[name]) is None:
        raise UsageError(f"KERAS_BACKEND={name}, but {BACKEND_MODULES[name]} is not installed: install it, or unset "
                         "KERAS_BACKEND to use TensorFlow")


def show_logs(show=True):
    """Let TensorFlow's start-up lines through (``--verbose``)."""
    global _show_logs
    _show_logs = show


def wants_logs():
    return _show_logs or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1")


@contextlib.contextmanager
def _standard_error_discarded():
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras(start_devices=True):
    """``keras``, its backend started; TensorFlow's C++ start-up lines hidden
    unless :func:`wants_logs`. ``start_devices=False`` leaves TensorFlow's
    devices alone (a multi-worker run must set up its collectives first)."""
    if "keras" in sys.modules or wants_logs():
        import keras

        return keras
    # the level does hide what TensorFlow logs once running (tf.data's "Memory
    # patch applied", CPU feature notes): 2 keeps its errors only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _standard_error_discarded():
            import keras

            if start_devices and keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_logical_devices()  # device set-up prints the rest
    except OSError:  # no file descriptor 2 to redirect (an embedded interpreter): start as it is
        import keras
    return keras
