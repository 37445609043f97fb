"""Training across machines: a custom loop under MultiWorkerMirroredStrategy.

Keras 3's ``Model.fit`` does not run under
``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so a
multi-worker run trains with this loop, the pattern of TensorFlow's own
"custom training loop with tf.distribute" guide:

- every worker builds the same model and optimizer inside the strategy's
  scope; gradients are summed over all replicas by the optimizer, the loss is
  averaged over the global batch (``tf.nn.compute_average_loss``);
- each worker reads only its own part of the training galaxies (rows
  ``pipeline_id::pipelines`` of the split, through the same cached batches as
  ``fit``), in per-replica batches, and every worker takes the same number of
  steps an epoch;
- the planned epochs all run: early stopping would need every worker to agree
  on a validation loss, and BatchNorm's moving statistics are each worker's
  own. Each worker measures the validation split itself; the chief's figures
  and model are the ones written;
- a collective that waits longer than the strategy's timeout (a lost peer)
  raises, and :func:`fit` turns that into a :class:`PeerLost` with a message.
  Joining the cluster is not covered by that timeout (a peer that never
  starts leaves the first collective waiting for ever), so a
  :class:`Watchdog` armed before the strategy exists ends the process with a
  message when no training step has finished for that long.
"""

import os
import sys
import time

import numpy as np

from galaxy_classification.errors import PeerLost

_WATCHDOG = """
import os, select, signal, sys, time
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
while True:
    ready, _, _ = select.select([sys.stdin], [], [], seconds)
    if not ready:
        sys.stderr.write("error: " + message + "\\n"); sys.stderr.flush()
        for kind in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(parent, kind)
            except ProcessLookupError:
                break
            time.sleep(3)
        sys.exit(3)
    if not os.read(sys.stdin.fileno(), 4096):
        sys.exit(0)  # the trainer finished or stopped: nothing to watch
"""


class Watchdog:
    """Ends this process with ``message`` unless :meth:`feed` is called at
    least every ``seconds``. It lives in a small child process: a collective
    stuck in TensorFlow's C++ holds the interpreter, so no thread of ours could
    act."""

    def __init__(self, seconds, message):
        import subprocess

        self._child = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(float(seconds)),
                                        message], stdin=subprocess.PIPE)

    def feed(self):
        try:
            self._child.stdin.write(b".")
            self._child.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def stop(self):
        try:
            self._child.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self._child.wait(timeout=10)


def fit(distribution, model, plan, batches, seed, progress=True):
    """Train ``model`` (built and compiled inside ``distribution.scope()``) on
    ``plan`` (a :class:`~galaxy_classification.training.plan.TrainingPlan`) for
    its planned epochs, reading through ``batches`` (its
    :class:`~galaxy_classification.training.loop.TrainingBatches`); returns
    (history dict, seconds)."""
    import keras
    import tensorflow as tf

    from galaxy_classification.data import input_pipeline

    strategy = distribution.strategy
    settings, labels, train_rows = plan.settings, plan.labels, plan.train_rows
    images, prepare = batches.images, batches.prepare
    global_batch = settings.batch_size
    steps = max(1, len(train_rows) // global_batch)
    loss_object = keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing or 0.0,
                                                       reduction=None)

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        mine = np.asarray(train_rows)[context.input_pipeline_id::context.num_input_pipelines]
        replica_batches = input_pipeline.GalaxyBatches(images, mine, labels, per_replica, prepare, shuffle=True,
                                               augment=batches.augment, class_weights=batches.class_weights,
                                               seed=seed + context.input_pipeline_id)

        def generate():
            while True:
                for index in range(len(replica_batches)):
                    item = replica_batches[index]
                    weights = item[2] if len(item) == 3 else np.ones(len(item[1]), np.float32)
                    yield item[0], item[1], weights
                replica_batches.on_epoch_end()

        size = settings.image_size
        signature = (tf.TensorSpec((None, size, size, 3), tf.float32), tf.TensorSpec((None, 2), tf.float32),
                     tf.TensorSpec((None,), tf.float32))
        return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))

    @tf.function
    def train_step(iterator):
        def step(images, targets, weights):
            with tf.GradientTape() as tape:
                probabilities = model(images, training=True)
                loss = tf.nn.compute_average_loss(loss_object(targets, probabilities) * weights,
                                                  global_batch_size=global_batch)
                loss += tf.nn.scale_regularization_loss(sum(model.losses)) if model.losses else 0.0
            gradients = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        return strategy.reduce("SUM", strategy.run(step, args=next(iterator)), axis=None)

    history = {"loss": [], "val_loss": [], "val_accuracy": []}
    validation = input_pipeline.GalaxyBatches(images, plan.validation_rows, labels, global_batch, prepare)
    started = time.perf_counter()
    watchdog = distribution.watchdog
    try:
        for epoch in range(settings.epochs):
            losses = []
            for _ in range(steps):
                losses.append(float(train_step(iterator)))
                if watchdog is not None:
                    watchdog.feed()
            history["loss"].append(float(np.mean(losses)))
            val_loss, val_accuracy = _validate(model, validation, loss_object)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
            if progress:
                print(f"epoch {epoch + 1}/{settings.epochs}: loss {history['loss'][-1]:.4f}, validation loss "
                      f"{val_loss:.4f}, validation accuracy {val_accuracy:.3f} ({steps} steps of {global_batch})",
                      flush=True)
            if watchdog is not None:
                watchdog.feed()  # validation takes time too
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.CancelledError,
            tf.errors.InternalError) as error:
        raise PeerLost(f"a worker lost contact with its peers during training ({type(error).__name__}: "
                       f"{str(error).splitlines()[0][:200]}); every worker of the cluster must run, and reach the "
                       "others' addresses in TF_CONFIG") from None
    finally:
        if watchdog is not None:
            watchdog.stop()
    return history, time.perf_counter() - started


def _validate(model, validation, loss_object):
    losses, correct, count = [], 0, 0
    for index in range(len(validation)):
        images, targets = validation[index][:2]
        probabilities = np.asarray(model(images, training=False))
        losses.append(np.asarray(loss_object(targets, probabilities)))
        correct += int((probabilities.argmax(axis=1) == targets.argmax(axis=1)).sum())
        count += len(targets)
    return float(np.concatenate(losses).mean()), correct / max(count, 1)
