"""Peak memory of training does not grow with the number of galaxies.

For 1,000, 4,000 and 10,000 galaxies of 512² (written to disk by this script,
deleted afterwards) and both presets, runs in a fresh process

    python quick_cnn_trainer.py --data DIR --preset P --epochs 1 [--steps-per-epoch 40] --out OUT

and prints the child's peak resident memory (``ru_maxrss`` from ``os.wait4``).
The modern preset trains one full epoch (70% x 80% of the galaxies). The seed
preset trains 40 batches of 5 (at ~5 images/s a full epoch at 10,000 galaxies
would take 20 minutes); both then predict every validation and test galaxy,
so every run streams at least half of the whole image file from disk.

Pass, for each preset: the peak at the largest size within 1.1x of the peak at
1,000 (flat in the number of galaxies). The modern preset's peak at 10,000 must
also stay <= 2 GiB; the seed network's is printed, not judged: its 29.6 M
weights with Adam's two copies and 512² activations need ~2.1 GiB at any size,
which says nothing about scaling.

    .venv/bin/python bench/bench_memory.py [--sizes 1000 4000 10000] [--keep-going]

Needs ~8 GB of free disk under bench/output/ (git-ignored; removed at the end).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "bench" / "output" / "memory"
SEED_STEPS = 40
BATCH_SIZE = {"seed": 5, "modern": 64}  # the presets' own
LIMIT_BYTES = 2 * 1024**3
MAX_GROWTH = 1.1  # peak at the largest size / peak at 1,000


def peak_rss_of_training(data_dir, preset, out_dir):
    command = [sys.executable, str(ROOT / "quick_cnn_trainer.py"), "--data", str(data_dir), "--preset", preset,
               "--epochs", "1", "--out", str(out_dir), "--seed", "0"]
    # the same batch at every size: the modern preset would otherwise shrink its batch
    # on the smallest sample (at least 25 steps an epoch) and the sizes would not compare
    command += ["--batch-size", str(BATCH_SIZE[preset])]
    if preset == "seed":
        command += ["--steps-per-epoch", str(SEED_STEPS)]
    environment = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    with open(out_dir.with_suffix(".log"), "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed; see {out_dir.with_suffix('.log')}")
    return usage.ru_maxrss * 1024, time.perf_counter() - started  # Linux reports KiB


def write_data_in_a_child(data_dir, n_galaxies):
    """Generate the data set in its own process. Writing a memory-mapped file
    makes the writer's RSS as large as the file, and on Linux a child started
    from a process inherits that process's peak RSS into its own ru_maxrss
    (exec records the pre-exec high-water mark), so this bench must stay small."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); from bench_data import write_bench_data; "
            f"write_bench_data({str(data_dir)!r}, {n_galaxies})")
    subprocess.run([sys.executable, "-c", code], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--presets", nargs="+", default=["seed", "modern"])
    arguments = parser.parse_args()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    peaks = {}
    try:
        for n_galaxies in arguments.sizes:
            data_dir = OUTPUT / f"data_{n_galaxies}"
            started = time.perf_counter()
            write_data_in_a_child(data_dir, n_galaxies)
            gigabytes = (data_dir / "galaxy_images.npy").stat().st_size / 1e9
            print(f"{n_galaxies} galaxies of 512x512: {gigabytes:.1f} GB on disk, written in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            for preset in arguments.presets:
                out_dir = OUTPUT / f"run_{preset}_{n_galaxies}"
                peak, seconds = peak_rss_of_training(data_dir, preset, out_dir)
                peaks[preset, n_galaxies] = peak
                print(f"  preset {preset:6s}: peak RSS {peak / 1024**2:7.0f} MiB  ({seconds:.0f} s)", flush=True)
            shutil.rmtree(data_dir)
    finally:
        shutil.rmtree(OUTPUT, ignore_errors=True)
    print("\npeak RSS, MiB       " + "".join(f"{n:>10,d}" for n in arguments.sizes))
    verdicts = []
    for preset in arguments.presets:
        row = [peaks.get((preset, n)) for n in arguments.sizes]
        print(f"{preset:20s}" + "".join(f"{p / 1024**2:10.0f}" for p in row if p))
        largest = max((n for n in arguments.sizes if (preset, n) in peaks), default=0)
        if (preset, 1000) in peaks and largest > 1000:
            ratio = peaks[preset, largest] / peaks[preset, 1000]
            verdicts.append(f"{preset}: {largest:,d} / 1,000 = {ratio:.3f} ({'ok' if ratio <= MAX_GROWTH else 'FAIL'} "
                            f"<= {MAX_GROWTH})")
        if (preset, 10000) in peaks:
            gib = peaks[preset, 10000] / 1024**3
            if preset == "seed":
                verdicts.append(f"seed: 10,000 -> {gib:.2f} GiB (not judged: the network's own size)")
            else:
                ok = peaks[preset, 10000] <= LIMIT_BYTES
                verdicts.append(f"{preset}: 10,000 -> {gib:.2f} GiB ({'ok' if ok else 'FAIL'} <= 2 GiB)")
    print("\n".join(verdicts))
    return 1 if any("FAIL" in verdict for verdict in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
