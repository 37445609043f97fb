"""The real-data result in one command: train ``--preset modern`` on Galaxy Zoo 1, judge it on a fixed held-out set.

The shared data (``../shared/data/gz1`` beside the project: real SDSS DR7 cutouts
with Galaxy Zoo 1 labels) is split once and for all: ``bench/gz1_holdout.csv``
lists 600 galaxies (300 spirals, edge-on discs among them in their natural
share, and 300 ellipticals) that are never used for training or tuning. Every
other labelled galaxy is training data. The bench

1. writes ``bench/output/gz1/train.csv`` and ``holdout.csv`` (columns file,label,
   absolute image paths; the images themselves stay in the shared folder),
2. runs ``quick_cnn_trainer.py --preset modern --data train.csv --seed 0
   --test-fraction 0.1`` (``--seed``, ``--epochs``, ``--image-size`` pass through) in a
   child process and measures its wall time (image cache, training and the
   trainer's own report included),
3. runs ``quick_cnn_trainer.py evaluate`` and ``predict`` on the holdout, and
4. prints accuracy and per-class recall with 95% Wilson intervals, ROC AUC with a
   95% bootstrap interval, calibration (ECE, Brier, accuracy of the most confident
   80%), the wall time, the model's size and parameter count.

Run it from the project root::

    .venv/bin/python bench/bench_gz1.py                    # about 10-15 minutes on 2 cores
    .venv/bin/python bench/bench_gz1.py --install-model    # also ship models/sdss-gz1.keras + .json
    .venv/bin/python bench/bench_gz1.py --seed 1           # another seed of the same recipe
    .venv/bin/python bench/bench_gz1.py --ensemble 3       # three networks averaged (--precision too)
    .venv/bin/python bench/bench_gz1.py --learning-curve   # also 250, 500, 1000, 2000 galaxies (much longer)
    make gz1                                               # = --install-model
    make learning-curve

Quick smoke run of the whole chain (figures meaningless):
``bench/bench_gz1.py --limit 200 --epochs 1 --learning-curve --curve-sizes 60 120``.
Without the shared data the bench says so and exits with status 0.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from galaxy_classification import CLASS_NAMES
from galaxy_classification.data.storage import atomic_output, write_csv_atomic, write_text_atomic  # noqa: E402
from galaxy_classification.model import precision  # noqa: E402

TRAINER = ROOT / "quick_cnn_trainer.py"
HOLDOUT_LIST = ROOT / "bench" / "gz1_holdout.csv"
DEFAULT_GZ1_DIR = ROOT.parent / "shared" / "data" / "gz1"
OUTPUT = ROOT / "bench" / "output" / "gz1"
MODEL_FILE = "my-galaxy-model.keras"
INSTALLED_MODEL = ROOT / "models" / "sdss-gz1.keras"
INSTALLED_FIGURES = ROOT / "models" / "sdss-gz1.json"
MAX_SHIPPED_BYTES = 10_000_000  # a shipped model (an ensemble in one file too) stays under 10 MB
CURVE_SIZES = (250, 500, 1000, 2000)
SUBSET_SEED = 0
BOOTSTRAP_RESAMPLES = 2000


# --------------------------------------------------------------------------- data


def holdout_from_command_line(description):
    """The fixed held-out rows (``--limit N``: the first N), or None after saying
    why when the shared data is absent: the start of the benches that use it."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--limit", type=int, help="first N held-out galaxies only")
    arguments = parser.parse_args()
    if not (DEFAULT_GZ1_DIR / "labels.csv").is_file():
        print(f"skipped: {DEFAULT_GZ1_DIR} not found")
        return None
    return pd.read_csv(HOLDOUT_LIST, dtype={"objid": str}).head(arguments.limit)


def read_labelled(gz1_dir):
    """Every spiral / elliptical row of the shared labels.csv (mergers and unknowns dropped)."""
    table = pd.read_csv(gz1_dir / "labels.csv", dtype={"objid": str, "file": str})
    table = table[table["label"].notna()].copy()
    table["label"] = table["label"].astype(int)
    return table


def split_training_and_holdout(gz1_dir):
    """(training rows, holdout rows) of the shared data; the holdout is bench/gz1_holdout.csv."""
    labelled = read_labelled(gz1_dir)
    holdout_files = pd.read_csv(HOLDOUT_LIST, dtype=str)["file"]
    unknown = set(holdout_files) - set(labelled["file"])
    if unknown:
        raise ValueError(f"{HOLDOUT_LIST}: {len(unknown)} files are not labelled galaxies of {gz1_dir}, "
                         f"e.g. {sorted(unknown)[0]}")
    in_holdout = labelled["file"].isin(holdout_files)
    return labelled[~in_holdout], labelled[in_holdout]


def stratified_subset(rows, n_galaxies, seed=SUBSET_SEED):
    """``n_galaxies`` rows drawn at random with the class shares of ``rows``, in their original order."""
    from sklearn.model_selection import train_test_split

    if n_galaxies >= len(rows):
        return rows
    chosen, _ = train_test_split(rows, train_size=n_galaxies, stratify=rows["label"], random_state=seed)
    return rows.loc[sorted(chosen.index)]


def write_data_csv(rows, gz1_dir, path):
    """A trainer --data CSV: file (absolute, so the CSV can live anywhere), label,
    field_of_view (the Galaxy Zoo 1 frames' 10.152 x petroR90_r across)."""
    from galaxy_classification.data.field_of_view import GALAXY_ZOO_1_FIELD

    table = pd.DataFrame({"file": [str((gz1_dir / name).resolve()) for name in rows["file"]],
                          "label": rows["label"].to_numpy(),
                          "field_of_view": GALAXY_ZOO_1_FIELD.petro_radii})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(table, path)
    return path


# --------------------------------------------------------------------------- running the trainer


def run_trainer(arguments, log_path):
    """Run ``quick_cnn_trainer.py arguments`` in a child; its output goes to the screen and ``log_path``.
    Returns the wall time in seconds; a failure stops the bench."""
    command = [sys.executable, str(TRAINER), *map(str, arguments)]
    print("$", " ".join(command), flush=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in child.stdout:
            sys.stdout.write(line)
            log.write(line)
        status = child.wait()
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"quick_cnn_trainer.py failed (exit {status}); output in {log_path}")
    return seconds


def train_command(train_csv, out_dir, options):
    # the trainer's own test split only feeds its report: the holdout judges the
    # model, so keep 10% instead of the seed's 30% and train on more galaxies
    return ["--preset", "modern", "--data", train_csv, "--out", out_dir, "--test-fraction", 0.1, *options]


def trainer_options(arguments):
    """The bench's options that go to every training run unchanged."""
    options = ["--seed", arguments.seed]
    for name in ("epochs", "image_size", "ensemble", "precision"):
        value = getattr(arguments, name)
        if value is not None:
            options += [f"--{name.replace('_', '-')}", value]
    return options


def train_and_judge(train_csv, holdout_csv, out_dir, options):
    """Train on ``train_csv`` into ``out_dir/model``, evaluate and predict on the holdout.
    Returns (trainer arguments, wall seconds, holdout metrics dict, per-galaxy predictions)."""
    model_dir, holdout_dir = out_dir / "model", out_dir / "holdout"
    arguments = train_command(train_csv, model_dir, options)
    wall_seconds = run_trainer(arguments, out_dir / "train.log")
    model = model_dir / MODEL_FILE
    run_trainer(["evaluate", "--model", model, "--data", holdout_csv, "--out", holdout_dir],
                out_dir / "evaluate.log")
    predictions_csv = holdout_dir / "predictions.csv"
    run_trainer(["predict", "--model", model, "--out", predictions_csv, holdout_csv], out_dir / "predict.log")
    metrics = json.loads((holdout_dir / "metrics.json").read_text())
    predictions = pd.read_csv(predictions_csv)
    return arguments, wall_seconds, metrics, predictions


# --------------------------------------------------------------------------- figures with intervals


def wilson_interval(successes, trials, confidence=0.95):
    from scipy.stats import binomtest

    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def bootstrap_auc_interval(labels, p_elliptical, confidence=0.95, seed=0):
    """BCa bootstrap interval of the ROC AUC, resampling galaxies (label and score together)."""
    from scipy.stats import bootstrap
    from sklearn.metrics import roc_auc_score

    result = bootstrap((np.asarray(labels), np.asarray(p_elliptical)), roc_auc_score, paired=True,
                       vectorized=False, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                       random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def holdout_figures(metrics, predictions, holdout_csv):
    """Accuracy, per-class recall (Wilson) and ROC AUC (bootstrap) on the holdout, JSON-ready."""
    from sklearn.metrics import roc_auc_score

    truth = pd.read_csv(holdout_csv)
    by_source = dict(zip(predictions["source"].map(lambda name: str(Path(name).resolve())),
                         predictions["p_elliptical"]))
    p_elliptical = np.array([by_source[str(Path(name).resolve())] for name in truth["file"]])
    labels = truth["label"].to_numpy()
    auc = float(roc_auc_score(labels, p_elliptical))
    if not np.isclose(auc, metrics["roc_auc"], atol=1e-4):
        raise SystemExit(f"predict and evaluate disagree on the holdout (AUC {auc:.4f} vs {metrics['roc_auc']:.4f})")

    matrix = np.asarray(metrics["confusion_matrix"])
    correct, total = int(np.trace(matrix)), int(matrix.sum())
    figures = {"n_galaxies": total, "accuracy": _with_interval(correct, total)}
    for label, name in enumerate(CLASS_NAMES):
        figures[f"recall_{name}"] = _with_interval(int(matrix[label, label]), int(matrix[label].sum()))
    low, high = bootstrap_auc_interval(labels, p_elliptical)
    figures["roc_auc"] = {"value": round(auc, 4), "ci95": [round(low, 4), round(high, 4)],
                          "method": f"BCa bootstrap, {BOOTSTRAP_RESAMPLES} resamples"}
    figures["confusion_matrix"] = matrix.tolist()
    calibration = metrics["calibration"]
    at_80 = calibration["accuracy_at_coverage"]["0.8"]
    figures["calibration"] = {"ece": round(calibration["expected_calibration_error"], 4),
                              "ece_bins": calibration["ece_bins"], "brier": round(calibration["brier_score"], 4),
                              "accuracy_at_80_percent_coverage": {"value": round(at_80["accuracy"], 4),
                                                                  "galaxies": at_80["galaxies"]}}
    return figures


def _with_interval(successes, trials):
    low, high = wilson_interval(successes, trials)
    return {"value": round(successes / trials, 4), "correct": successes, "of": trials,
            "ci95": [round(low, 4), round(high, 4)], "method": "Wilson"}


def model_facts(model_path):
    """Size on disk and parameter count of a saved classifier."""
    from galaxy_classification.model import files as model_files

    return {"size_bytes": model_path.stat().st_size, "parameters": int(model_files.load_model(model_path).keras_model.count_params())}


# --------------------------------------------------------------------------- printing


def print_result(figures, facts, wall_seconds, trainer_metrics):
    def line(title, entry):
        low, high = entry["ci95"]
        counts = f" ({entry['correct']} of {entry['of']})" if "correct" in entry else ""
        print(f"  {title:<20} {entry['value']:.1%}  [95% CI {low:.1%} - {high:.1%}]{counts}")

    print(f"\nHeld-out Galaxy Zoo 1 galaxies: {figures['n_galaxies']} (never used for training or tuning)")
    line("accuracy", figures["accuracy"])
    for name in CLASS_NAMES:
        line(f"recall {name}", figures[f"recall_{name}"])
    auc = figures["roc_auc"]
    print(f"  {'ROC AUC':<20} {auc['value']:.4f} [95% CI {auc['ci95'][0]:.4f} - {auc['ci95'][1]:.4f}]")
    calibration = figures["calibration"]
    at_80 = calibration["accuracy_at_80_percent_coverage"]
    print(f"  {'calibration':<20} ECE {calibration['ece']:.3f} ({calibration['ece_bins']} bins), "
          f"Brier {calibration['brier']:.3f}; the most confident 80%: {at_80['value']:.1%} right "
          f"({at_80['galaxies']} galaxies)")
    print(f"  training wall time   {wall_seconds / 60:.1f} min for the whole trainer run (cache, fit, report; "
          f"fit alone {trainer_metrics['training_seconds']:.0f} s, {trainer_metrics['epochs_run']} epochs) "
          f"on {os.cpu_count()} CPU cores")
    print(f"  model                {facts['size_bytes'] / 1e6:.2f} MB, {facts['parameters']:,} parameters")


def print_learning_curve(rows):
    print("\nLearning curve (held-out accuracy vs galaxies given to the trainer; it trains on 72% of them,")
    print("validates on 18% and tests on 10%)")
    print(f"  {'galaxies':>8}  {'trained on':>10}  {'accuracy':>17}  {'ROC AUC':>7}  {'wall time':>9}")
    for row in rows:
        print(f"  {row['n_galaxies']:>8}  {row['n_trained_on']:>10}  {row['accuracy']:>6.1%} "
              f"[{row['accuracy_ci_low']:.1%}-{row['accuracy_ci_high']:.1%}]  {row['roc_auc']:>7.4f}  "
              f"{row['wall_seconds'] / 60:>7.1f} m")


def plot_learning_curve(rows, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = pd.DataFrame(rows)
    figure = Figure(figsize=(6, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    errors = [table["accuracy"] - table["accuracy_ci_low"], table["accuracy_ci_high"] - table["accuracy"]]
    axes.errorbar(table["n_galaxies"], table["accuracy"], yerr=errors, marker="o", capsize=3,
                  label="held-out accuracy (95% Wilson CI)")
    axes.set_xscale("log")
    axes.minorticks_off()  # only the measured sizes are labelled
    axes.set_xticks(table["n_galaxies"], [f"{n:,}" for n in table["n_galaxies"]])
    axes.set_xlabel("Galaxies given to the trainer (log scale)")
    axes.set_ylabel("Accuracy on the 600 held-out galaxies")
    axes.set_title("Galaxy Zoo 1, --preset modern: learning curve")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")


# --------------------------------------------------------------------------- the bench


def learning_curve(training_rows, gz1_dir, holdout_csv, full_run, sizes, options):
    """Train on stratified subsets of ``sizes`` galaxies, judge each on the holdout; ``full_run`` is the 'all' point."""
    rows = []
    for n_galaxies in sizes:
        if n_galaxies >= len(training_rows):
            continue
        out_dir = OUTPUT / "learning_curve" / f"n{n_galaxies}"
        subset_csv = write_data_csv(stratified_subset(training_rows, n_galaxies), gz1_dir, out_dir / "train.csv")
        _, wall_seconds, metrics, predictions = train_and_judge(subset_csv, holdout_csv, out_dir, options)
        trainer_metrics = json.loads((out_dir / "model" / "metrics.json").read_text())
        rows.append(_curve_row(n_galaxies, trainer_metrics, holdout_figures(metrics, predictions, holdout_csv),
                               wall_seconds))
    rows.append(_curve_row(len(training_rows), *full_run))
    return rows


def _curve_row(n_galaxies, trainer_metrics, figures, wall_seconds):
    accuracy = figures["accuracy"]
    return {"n_galaxies": n_galaxies, "n_trained_on": trainer_metrics["split"]["train"],
            "accuracy": accuracy["value"], "accuracy_ci_low": accuracy["ci95"][0],
            "accuracy_ci_high": accuracy["ci95"][1], "roc_auc": figures["roc_auc"]["value"],
            "wall_seconds": round(wall_seconds, 1)}


def install_model(model_path, record):
    """Copy the model to models/sdss-gz1.keras and its figures to models/sdss-gz1.json, both atomically."""
    size = model_path.stat().st_size
    if size > MAX_SHIPPED_BYTES:
        raise SystemExit(f"not installing: {model_path} is {size / 1e6:.2f} MB, more than the "
                         f"{MAX_SHIPPED_BYTES / 1e6:g} MB a shipped model may have")
    INSTALLED_MODEL.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(INSTALLED_MODEL) as temporary:
        shutil.copyfile(model_path, temporary)
    write_text_atomic(INSTALLED_FIGURES, json.dumps(record, indent=2) + "\n")
    print(f"\ninstalled {INSTALLED_MODEL.relative_to(ROOT)} and {INSTALLED_FIGURES.relative_to(ROOT)}")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gz1-dir", type=Path, default=DEFAULT_GZ1_DIR,
                        help="the shared Galaxy Zoo 1 folder (default ../shared/data/gz1 beside the project)")
    parser.add_argument("--epochs", type=int, help="passed to the trainer (default: the preset's)")
    parser.add_argument("--image-size", type=int, help="passed to the trainer (default: the preset's)")
    parser.add_argument("--ensemble", type=int, help="passed to the trainer: K networks averaged (default 1)")
    parser.add_argument("--precision", choices=precision.CHOICES,
                        help="passed to the trainer (default: the preset's, float32)")
    parser.add_argument("--seed", type=int, default=0,
                        help="passed to the trainer (default 0); judge a change on the mean of several seeds")
    parser.add_argument("--install-model", action="store_true",
                        help="copy the model to models/sdss-gz1.keras and the figures to models/sdss-gz1.json")
    parser.add_argument("--learning-curve", action="store_true",
                        help="also train on stratified subsets of the training galaxies; table, CSV and plot")
    parser.add_argument("--curve-sizes", type=int, nargs="+", default=list(CURVE_SIZES), metavar="N",
                        help=f"subset sizes of the learning curve (default {' '.join(map(str, CURVE_SIZES))})")
    parser.add_argument("--limit", type=int,
                        help="smoke test only: train on a stratified random N of the training galaxies")
    return parser


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    for name in ("epochs", "image_size", "ensemble", "limit"):
        value = getattr(arguments, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if arguments.limit and arguments.install_model:
        parser.error("--limit is for smoke tests; a model trained on a subset cannot be installed")
    gz1_dir = arguments.gz1_dir.resolve()
    if not (gz1_dir / "labels.csv").is_file():
        print(f"skipped: the shared Galaxy Zoo 1 data is not at {gz1_dir} (pass --gz1-dir)")
        return 0

    training_rows, holdout_rows = split_training_and_holdout(gz1_dir)
    if arguments.limit:
        training_rows = stratified_subset(training_rows, arguments.limit)
    print(f"{len(training_rows)} training galaxies, {len(holdout_rows)} held out, from {gz1_dir}")
    train_csv = write_data_csv(training_rows, gz1_dir, OUTPUT / "train.csv")
    holdout_csv = write_data_csv(holdout_rows, gz1_dir, OUTPUT / "holdout.csv")

    options = trainer_options(arguments)
    trainer_arguments, wall_seconds, metrics, predictions = train_and_judge(train_csv, holdout_csv, OUTPUT, options)
    trainer_metrics = json.loads((OUTPUT / "model" / "metrics.json").read_text())
    figures = holdout_figures(metrics, predictions, holdout_csv)
    model_path = OUTPUT / "model" / MODEL_FILE
    facts = model_facts(model_path)
    print_result(figures, facts, wall_seconds, trainer_metrics)

    record = {
        "model": INSTALLED_MODEL.name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bench_command": "python bench/bench_gz1.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "training_command": "python quick_cnn_trainer.py "
                            + " ".join(str(Path(item).relative_to(ROOT)) if str(item).startswith(str(ROOT))
                                       else str(item) for item in trainer_arguments),
        "data": {"source": "../shared/data/gz1 (SDSS DR7 cutouts, Galaxy Zoo 1 labels)",
                 "training_galaxies": len(training_rows),
                 "training_classes": {CLASS_NAMES[label]: int(count)
                                      for label, count in training_rows["label"].value_counts().sort_index().items()},
                 "trainer_split": trainer_metrics["split"],
                 "holdout": str(HOLDOUT_LIST.relative_to(ROOT)), "holdout_galaxies": len(holdout_rows)},
        "holdout": figures,
        "training": {"wall_seconds": round(wall_seconds, 1), "fit_seconds": trainer_metrics["training_seconds"],
                     "epochs_run": trainer_metrics["epochs_run"], "image_size": trainer_metrics["image_size"],
                     "crop_fraction": trainer_metrics["crop_fraction"],
                     "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU",
                     "trainer_test_accuracy": trainer_metrics["accuracy"]},
        "size_bytes": facts["size_bytes"],
        "parameters": facts["parameters"],
    }

    if arguments.learning_curve:
        curve = learning_curve(training_rows, gz1_dir, holdout_csv, (trainer_metrics, figures, wall_seconds),
                               sorted(arguments.curve_sizes), options)
        print_learning_curve(curve)
        write_csv_atomic(pd.DataFrame(curve), OUTPUT / "learning_curve.csv")
        plot_learning_curve(curve, OUTPUT / "learning_curve.png")
        print(f"wrote {OUTPUT / 'learning_curve.csv'} and learning_curve.png")
        record["learning_curve"] = curve

    write_text_atomic(OUTPUT / "result.json", json.dumps(record, indent=2) + "\n")
    if arguments.install_model:
        install_model(model_path, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
