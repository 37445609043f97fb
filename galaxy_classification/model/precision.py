"""The arithmetic a network trains in: float32, or mixed bfloat16 where the CPU computes it natively.

Keras' ``mixed_bfloat16`` policy keeps every weight in float32 and does the
convolutions' arithmetic in bfloat16. On a CPU with bfloat16 instructions
(``avx512_bf16``, as on this project's AMD EPYC, or Intel's ``amx_bf16``) and
TensorFlow's oneDNN kernels, that trains the modern network somewhat faster
with the same held-out accuracy but a slightly worse ranking (models/README.md
and bench/RESULTS.md give the figures), so both presets train in float32
unless asked: ``--precision mixed_bfloat16``, or ``auto``, which picks it only
where the CPU says it has those instructions, on the TensorFlow backend with
oneDNN on and no GPU (on a CPU without them bfloat16 is emulated and slower;
GPUs are left to float32: nothing here measured them).

Saved models are float32 whatever the training precision (the trainer copies
the weights into a float32 network), so a file predicts the same way on every
machine and backend.
"""

import os
from pathlib import Path

from galaxy_classification.errors import UsageError

CHOICES = ("auto", "float32", "mixed_bfloat16")
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPU_INFO = Path("/proc/cpuinfo")


def cpu_flags(cpu_info=CPU_INFO):
    """The instruction-set flags the (Linux) kernel reports for the first CPU; empty elsewhere."""
    try:
        with open(cpu_info, encoding="ascii", errors="replace") as lines:
            for line in lines:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def check(requested):
    """``requested`` itself, or ValueError naming the allowed values."""
    if requested not in CHOICES:
        raise UsageError(f"--precision must be one of {', '.join(CHOICES)}, got {requested!r}")
    return requested


def choose(requested="auto", flags=None):
    """The Keras dtype policy name for ``--precision requested`` on this machine."""
    if check(requested) != "auto":
        return requested
    return "mixed_bfloat16" if _bfloat16_pays(cpu_flags() if flags is None else flags) else "float32"


def _bfloat16_pays(flags):
    if not flags & NATIVE_BFLOAT16_FLAGS or os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "0":
        return False
    from galaxy_classification.quiet import import_keras

    keras = import_keras()
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")
