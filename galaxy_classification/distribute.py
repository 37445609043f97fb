"""Training on more than one device, with the engine users already have: tf.distribute.

``--distribute`` chooses (:func:`choose`):

- ``none``: one device, exactly as on a laptop;
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over every visible GPU (or,
  for testing on a CPU, the logical CPU devices configured before TensorFlow
  starts); each replica takes the preset's batch, so the global batch grows
  with the number of replicas and the learning rate with it (the linear
  scaling rule, Goyal et al. 2017);
- ``multi-worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` from
  ``TF_CONFIG``. Refused with an explanation: Keras 3's ``Model.fit`` does not
  run under it (keras-team/keras#20585, open), and this project trains with
  ``fit``;
- ``auto`` (the default): ``multi-worker`` when ``TF_CONFIG`` is set,
  ``mirrored`` with more than one GPU, ``none`` otherwise. A CPU-only machine
  therefore behaves exactly as before.

Other Keras backends train on one device (``none``).
"""

import json
import os
from dataclasses import dataclass

CHOICES = ("auto", "none", "mirrored", "multi-worker")


@dataclass(frozen=True)
class Distribution:
    """What ran: ``strategy`` (None for one device), its name and the replicas in sync."""

    strategy: object
    name: str
    replicas: int = 1
    is_chief: bool = True

    def scope(self):
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def record(self):
        return {"strategy": self.name, "replicas": self.replicas}


def choose(choice="auto"):
    """The :class:`Distribution` for ``--distribute choice``; ValueError for one that cannot run here."""
    if choice not in CHOICES:
        raise ValueError(f"--distribute must be one of {', '.join(CHOICES)}, got {choice!r}")
    import keras

    if keras.backend.backend() != "tensorflow":
        if choice in ("mirrored", "multi-worker"):
            raise ValueError(f"--distribute {choice} needs the TensorFlow backend (KERAS_BACKEND is "
                             f"{keras.backend.backend()})")
        return Distribution(None, "none")
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if choice == "auto":
        choice = "multi-worker" if os.environ.get("TF_CONFIG") else ("mirrored" if len(gpus) > 1 else "none")
    if choice == "none":
        return Distribution(None, "none")
    if choice == "multi-worker":
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        raise ValueError(
            f"--distribute multi-worker (TF_CONFIG with {sum(len(v) for v in cluster.values())} tasks): Keras 3's "
            "Model.fit does not run under tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585), so "
            "training across machines is not available; use --distribute mirrored on one machine with several "
            "GPUs, or unset TF_CONFIG")
    devices = [device.name for device in gpus] or [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    return Distribution(strategy, "MirroredStrategy", int(strategy.num_replicas_in_sync))
