"""Benchmark: the same training on one device, on two devices (MirroredStrategy) and as two workers.

Writes a synthetic 400-galaxy data set (32 px, the sdss_query field) and runs
``quick_cnn_trainer.py --preset modern`` three ways, each in fresh processes on
this machine: one device; two logical CPU devices under ``--distribute
mirrored`` (each replica the preset's batch); two worker processes on
127.0.0.1 with a ``TF_CONFIG`` (``MultiWorkerMirroredStrategy``). Prints each
run's wall time, training seconds, test accuracy and what ``metrics.json``
says ran. On 2 cores the extra replicas share the same cores: this checks
that the distributed paths train the same model, not that they are faster.

    .venv/bin/python bench/bench_distributed.py            # about 3 minutes
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "bench" / "output" / "distributed"
ARGUMENTS = ["--preset", "modern", "--epochs", "6", "--image-size", "32", "--batch-size", "16", "--seed", "0"]
TWO_DEVICES = ("import sys, tensorflow as tf\n"
               "cpu = tf.config.list_physical_devices('CPU')[0]\n"
               "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
               "import quick_cnn_trainer\nsys.exit(quick_cnn_trainer.main(sys.argv[1:]))\n")


def environment(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run(command, **extra):
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=environment(**extra), cwd=ROOT,
                              timeout=900)
    if finished.returncode != 0:
        raise SystemExit(finished.stderr[-3000:])
    return time.perf_counter() - started


def figures(name, wall, out):
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"  {name:34s} wall {wall:6.1f} s, training {metrics['training_seconds']:6.1f} s, test accuracy "
          f"{metrics['accuracy']:.3f} ({metrics['n_galaxies']} galaxies), ran {metrics['distribution']}, "
          f"epochs {metrics['epochs_run']}", flush=True)


def main():
    sys.path.insert(0, str(ROOT))
    import sdss_query

    shutil.rmtree(OUTPUT, ignore_errors=True)
    data = OUTPUT / "data"
    sdss_query.create_datafiles(400, source="synthetic", out_dir=data, image_size=64, image_scale_factor=0.08,
                                seed=1)
    trainer = [sys.executable, str(ROOT / "quick_cnn_trainer.py"), "--data", str(data), *ARGUMENTS]
    print(f"\n400 synthetic galaxies, {' '.join(ARGUMENTS)}; {os.cpu_count()} CPUs")
    wall = run([*trainer, "--distribute", "none", "--out", str(OUTPUT / "one")])
    figures("one device", wall, OUTPUT / "one")
    wall = run([sys.executable, "-c", TWO_DEVICES, "--data", str(data), *ARGUMENTS, "--batch-size", "8",
                "--distribute", "mirrored", "--out", str(OUTPUT / "mirrored")])
    figures("two devices (mirrored, 2 x 8)", wall, OUTPUT / "mirrored")
    sockets = [socket.socket() for _ in range(2)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    cluster = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    for sock in sockets:
        sock.close()
    started = time.perf_counter()
    workers = [subprocess.Popen([*trainer, "--batch-size", "8", "--out", str(OUTPUT / f"worker-{index}")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env=environment(TF_CONFIG=json.dumps({"cluster": {"worker": cluster},
                                                                      "task": {"type": "worker", "index": index}})))
               for index in range(2)]
    for worker in workers:
        _, error = worker.communicate(timeout=900)
        if worker.returncode != 0:
            raise SystemExit(error[-3000:])
    figures("two workers on 127.0.0.1 (2 x 8)", time.perf_counter() - started, OUTPUT / "worker-0")
    print(f"  the second worker wrote a model: {(OUTPUT / 'worker-1' / 'my-galaxy-model.keras').exists()}")
    shutil.rmtree(OUTPUT, ignore_errors=True)


if __name__ == "__main__":
    main()
