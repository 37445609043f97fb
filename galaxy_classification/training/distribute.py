"""Training on more than one device, with the engine users already have: tf.distribute.

``--distribute`` chooses (:func:`choose`):

- ``none``: one device, exactly as on a laptop;
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over every visible GPU (or,
  for testing on a CPU, the logical CPU devices configured before TensorFlow
  starts); each replica takes the preset's batch, so the global batch grows
  with the number of replicas and the learning rate with it (the linear
  scaling rule, Goyal et al. 2017);
- ``multi-worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the
  cluster that ``TF_CONFIG`` describes (or Slurm's, through
  ``SlurmClusterResolver``, in a job of several tasks). Keras 3's
  ``Model.fit`` does not run under it (keras-team/keras#20585), so these runs
  train with the custom loop of :mod:`multi_worker`; collectives give up after
  ``peer_timeout`` seconds, so a worker that loses its peers fails with a
  message instead of hanging;
- ``auto`` (the default): ``multi-worker`` when ``TF_CONFIG`` is set or Slurm
  runs several tasks, ``mirrored`` with more than one GPU, ``none`` otherwise.
  A CPU-only machine therefore behaves exactly as before.

Other Keras backends train on one device (``none``).
"""

import json
import os
from dataclasses import dataclass

from galaxy_classification import quiet
from galaxy_classification.errors import UsageError

CHOICES = ("auto", "none", "mirrored", "multi-worker")


@dataclass(frozen=True)
class Distribution:
    """What ran: ``strategy`` (None for one device), its name and the replicas in sync."""

    strategy: object
    name: str
    replicas: int = 1
    is_chief: bool = True
    watchdog: object = None  # multi-worker: ends a process whose peers stay silent

    def scope(self):
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    @property
    def is_multi_worker(self):
        return self.name == "MultiWorkerMirroredStrategy"

    def record(self):
        return {"strategy": self.name, "replicas": self.replicas}


def _slurm_tasks():
    try:
        return int(os.environ.get("SLURM_NTASKS", "1"))
    except ValueError:
        return 1


def choose(choice="auto", peer_timeout=600):
    """The :class:`Distribution` for ``--distribute choice``; ValueError for one that cannot run here."""
    if choice not in CHOICES:
        raise UsageError(f"--distribute must be one of {', '.join(CHOICES)}, got {choice!r}")
    several = bool(os.environ.get("TF_CONFIG")) or _slurm_tasks() > 1
    multi_worker = choice == "multi-worker" or (choice == "auto" and several)
    # a multi-worker run must set up its collectives before any device starts
    keras = quiet.import_keras(start_devices=not multi_worker)

    if keras.backend.backend() != "tensorflow":
        if choice in ("mirrored", "multi-worker"):
            raise UsageError(f"--distribute {choice} needs the TensorFlow backend (KERAS_BACKEND is "
                             f"{keras.backend.backend()})")
        return Distribution(None, "none")
    import tensorflow as tf

    if multi_worker:
        return _multi_worker(tf, peer_timeout)
    gpus = tf.config.list_logical_devices("GPU")
    if choice == "auto":
        choice = "mirrored" if len(gpus) > 1 else "none"
    if choice == "none":
        return Distribution(None, "none")
    devices = [device.name for device in gpus] or [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    return Distribution(strategy, "MirroredStrategy", int(strategy.num_replicas_in_sync))


def _multi_worker(tf, peer_timeout):
    if os.environ.get("TF_CONFIG"):
        try:
            config = json.loads(os.environ["TF_CONFIG"])
            cluster, task = config["cluster"], config["task"]
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"TF_CONFIG is not a cluster description ({error}): it needs 'cluster' and 'task'") from None
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        chief = task.get("type") == "chief" or (task.get("type") == "worker" and int(task.get("index", 0)) == 0
                                                 and "chief" not in cluster)
    elif _slurm_tasks() > 1:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        chief = int(os.environ.get("SLURM_PROCID", "0")) == 0
    else:
        raise UsageError("--distribute multi-worker needs TF_CONFIG (or a Slurm job of several tasks) to find "
                         "its peers")
    from galaxy_classification.training.multi_worker import Watchdog

    workers = ", ".join(address for addresses in resolver.cluster_spec().as_dict().values() for address in addresses)
    watchdog = Watchdog(peer_timeout, f"no word from the other workers ({workers}) for {peer_timeout:g} s "
                                      "(--peer-timeout): every worker of the cluster must be running and reachable")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(peer_timeout))
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    return Distribution(strategy, "MultiWorkerMirroredStrategy", int(strategy.num_replicas_in_sync), chief, watchdog)
