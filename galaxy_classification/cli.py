"""The command lines of ``quick_cnn_trainer.py`` and ``sdss_query.py``.

One parser function per trainer command; :func:`run` is the only place where
the project's errors become one line on stderr and an exit code, and where
notes (:class:`~galaxy_classification.errors.GalaxyNote` warnings) are printed,
each once, as ``note: ...``:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     done: every galaxy classified, or some not (each with its reason in the
      table) unless ``--strict``
1     a service failed (SDSS, a training peer), or predict / classify could
      classify none of the galaxies, or (``--strict``) not all of them
2     a value, file or model that cannot be used: nothing was done
130   interrupted (Ctrl-C; 143 for SIGTERM)
====  ==========================================================================
"""

import argparse
import contextlib
import sys
import warnings

from galaxy_classification import PRETRAINED_MODEL_NAME
from galaxy_classification.errors import GalaxyNote, PeerLost, SDSSQueryError, UsageError
from galaxy_classification.model import precision as precision_module
from galaxy_classification.model.presets import PRESETS
from galaxy_classification.sdss import parameters

TRAINER = "quick_cnn_trainer.py"
COMMANDS = ("train", "evaluate", "predict", "classify", "merge", "ensemble")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad value in one line (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


@contextlib.contextmanager
def notes_printed_once():
    """Print each :class:`GalaxyNote` once as ``note: ...`` on stderr; other warnings as Python would."""
    printed = set()  # the warnings module's own "once" misses repeats after other libraries add filters
    with warnings.catch_warnings():
        warnings.simplefilter("always", GalaxyNote)
        show_other = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, GalaxyNote):
                show_other(message, category, filename, lineno, file, line)
            elif str(message) not in printed:
                printed.add(str(message))
                print(f"note: {message}", file=sys.stderr)

        warnings.showwarning = show
        yield


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's time limit, ``kill``), raised like Ctrl-C so every cleanup runs."""


@contextlib.contextmanager
def terminate_like_interrupt():
    """While the command runs, SIGTERM unwinds the stack as Ctrl-C does: no half-written file or staging
    folder is left behind."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signal_number, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(parser: argparse.ArgumentParser, action, input_name: str = None, interrupted: str = "interrupted") -> int:
    """Call ``action()`` and turn what it raises into one line and an exit code (see the module's table);
    an action that returns an int chose its exit code itself.

    ``input_name`` names the input in a data file's error when the message does not name an option itself.
    """
    from galaxy_classification.errors import DataFileError

    try:
        with notes_printed_once(), terminate_like_interrupt():
            code = action()
    except (SDSSQueryError, PeerLost) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except DataFileError as error:
        message = str(error)
        parser.error(message if message.startswith("--") or input_name is None else f"{input_name}: {message}")
    except UsageError as error:
        parser.error(str(error))
    except KeyboardInterrupt as error:
        print(interrupted, file=sys.stderr)
        return 143 if isinstance(error, Terminated) else 130
    return code if type(code) is int else 0  # an action returns its result, or an exit code of its own


def classified_exit_code(table, strict: bool = False) -> int:
    """0 when every galaxy of a predict / classify table was classified (or, without ``strict``, some);
    1, with one line on stderr, when none was or (``strict``) any was not."""
    failed = int((table["status"] == "failed").sum()) if "status" in table.columns else 0
    if len(table) and failed == len(table):
        print(f"error: none of the {len(table)} galaxies could be classified (each row's reason is in the table)",
              file=sys.stderr)
        return 1
    if failed and strict:
        print(f"error: {failed} of {len(table)} galaxies could not be classified (--strict)", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- argument types


def bounded_int(minimum, maximum=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value
    return parse


def fraction(minimum, maximum, meaning="a fraction"):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be {meaning} between {minimum:g} and {maximum:g}, got {value:g}")
        return value
    return parse


def _checked(check):
    """An argparse type from a function that raises UsageError."""
    def parse(text):
        try:
            return check(text)
        except UsageError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


crop_fraction = fraction(0.05, 1.0, "a fraction of the frame")
test_fraction = fraction(0.05, 0.5)
confidence = fraction(0.5, 1.0, "a probability")
field_of_view = fraction(0.1, 1000.0, "petroR90 across")


def _part(text):
    from galaxy_classification.inference import parts

    return _checked(parts.parse_part)(text)


data_release = _checked(parameters.data_release_name)

CROP_OVERRIDE_HELP = (
    "central fraction of each image the model looks at, overriding the crop computed from the frames' "
    "field of view and the model's (default: computed)")
PART_HELP = ("process only the k-th of N disjoint parts of the rows (k from 0) into OUT.part-k-of-N; "
             "under a Slurm job array the default comes from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT; "
             "join the parts with 'quick_cnn_trainer.py merge OUT' (--shard is the same option)")
FIELD_OF_VIEW_HELP = (
    "how much sky the frames show, in petroR90 across, when the data does not record it (sdss_query's "
    "dataset.json and a CSV's field_of_view column do): e.g. 5.12 for sdss_query's defaults (512 px at "
    "0.01 x petroR90_g), 10.152 for Galaxy Zoo 1 frames (423 px at 0.024 x petroR90_r)")
MODEL_HELP = f"a .keras or .h5 model (default: the shipped {PRETRAINED_MODEL_NAME})"
TABLE_HELP = "output table: .csv, .ecsv, .fits or .vot (default {})"
MIN_CONFIDENCE_HELP = "call a galaxy 'uncertain' when its larger probability is below this"
GALLERY_HELP = ("also write OUT.html: every galaxy as the model saw it, to sort and filter in any browser (no "
                "server; thumbnails in OUT_thumbnails/)")
STRICT_HELP = "exit with status 1 when any galaxy could not be classified (default: only when none could)"
EXIT_CODES = ("exit status: 0 every galaxy classified (or some, each failure with its reason in the table); "
              "1 none classified, a service failed, or --strict and some failed; 2 a bad value, file or model")


# --------------------------------------------------------------------------- one parser per command


def train_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=TRAINER,
        description="Train a CNN to tell spiral (0) from elliptical (1) galaxies, report on a held-out 30%, "
                    "save my-galaxy-model.h5 and .keras.",
        epilog="other commands (each with --help): evaluate, predict, classify, merge, ensemble")
    add = parser.add_argument
    add("--data", default="data", help="a sdss_query data directory or a CSV with columns file,label (default data/)")
    add("--preset", choices=tuple(PRESETS), default=None,
        help="seed: the original network (default); modern: small, fast, augmented, for galaxies")
    add("--init-from", metavar="MODEL",
        help="finetune a saved model (a .keras or .h5 this project saved, an ensemble included; 'pretrained' "
             "for the shipped sdss-gz1.keras) instead of starting from random weights: the new model keeps its "
             "input size and field of view; recommended for a few hundred to a few thousand galaxies")
    add("--epochs", type=bounded_int(1), help="training epochs (preset: seed 15, modern 30 with early stopping)")
    add("--batch-size", type=bounded_int(1), help="images per batch (preset: seed 5, modern 64)")
    add("--image-size", type=bounded_int(parameters.MIN_IMAGE_SIZE, parameters.MAX_IMAGE_SIZE),
        help="network input side in pixels (preset: seed the images' own size, modern 64)")
    add("--crop", type=crop_fraction,
        help="keep this central fraction of each frame (default: computed from the data's field of view: the "
             "seed preset keeps the whole frame, the modern one 3.55 x petroR90 across, e.g. 0.69 of an "
             "sdss_query frame, 0.35 of a Galaxy Zoo 1 frame)")
    add("--field-of-view", type=field_of_view, help=FIELD_OF_VIEW_HELP)
    add("--distribute", choices=("auto", "none", "mirrored", "multi-worker"), default="auto",
        help="auto (default): several workers when TF_CONFIG is set (or Slurm runs several tasks), every GPU "
             "with MirroredStrategy when there are several, else one device; or name one")
    add("--peer-timeout", type=bounded_int(1), default=600, metavar="SECONDS",
        help="multi-worker: give up when the other workers have not answered for this long (default 600)")
    add("--ensemble", type=bounded_int(1, 20), default=1, metavar="K",
        help="train K networks (seeds seed, seed+1, ...) and save their average as one model (default 1)")
    add("--min-agreement", type=fraction(0.5, 1.0, "a vote fraction"), metavar="A",
        help="train only on galaxies whose Galaxy Zoo volunteers agreed at least this much (needs "
             "p_el_debiased / p_cs_debiased in the data, as sdss_query.py --labels galaxyzoo writes)")
    add("--precision", choices=precision_module.CHOICES, default=None,
        help="the arithmetic of training (default float32): mixed_bfloat16 trains faster on a CPU with native "
             "bfloat16 (AVX512_BF16 or AMX) and ranks galaxies slightly worse; auto picks it where the CPU has "
             "it, else float32; the saved model is float32 either way")
    add("--label-corrections", metavar="CSV",
        help="labels corrected by eye, as an evaluate gallery downloads them (label_corrections.csv: file, objid, "
             "old_label, new_label): applied to --data before the split; metrics.json records the file")
    add("--out", default=".", help="directory for the model, metrics and pictures (default .)")
    add("--seed", type=bounded_int(0), help="random seed: the same seed gives the same result")
    add("--steps-per-epoch", type=bounded_int(1),
        help="at most this many batches per epoch (quick trials on big data; default: all)")
    add("--test-fraction", type=test_fraction, default=0.3,
        help="fraction of the galaxies held out for the final test (default 0.3, the seed's 70/30 split; "
             "smaller when the model is judged on a separate set, e.g. with evaluate)")
    return parser


def evaluate_parser() -> OneLineParser:
    parser = OneLineParser(prog=f"{TRAINER} evaluate",
                           description="Judge a saved model on labelled galaxies; write metrics and pictures.")
    parser.add_argument("--model", required=True, help="a .keras or .h5 model saved by the trainer")
    parser.add_argument("--data", required=True, help="a sdss_query data directory or a file,label CSV")
    parser.add_argument("--out", default=".", help="directory for metrics.json and pictures (default .)")
    parser.add_argument("--crop", type=crop_fraction, help=CROP_OVERRIDE_HELP)
    parser.add_argument("--field-of-view", type=field_of_view, help=FIELD_OF_VIEW_HELP)
    parser.add_argument("--predictions", default="predictions.csv",
                        help="per-galaxy table written into --out; .csv, .ecsv, .fits or .vot (default "
                             "predictions.csv)")
    return parser


def predict_parser() -> OneLineParser:
    parser = OneLineParser(prog=f"{TRAINER} predict", description="Classify galaxy images with a saved model.",
                           epilog=EXIT_CODES)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image files, a directory of images, a CSV with a 'file' column, or a galaxy_images.npy")
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--out", default="predictions.csv", help=TABLE_HELP.format("predictions.csv"))
    parser.add_argument("--crop", type=crop_fraction, help=CROP_OVERRIDE_HELP)
    parser.add_argument("--field-of-view", type=field_of_view, help=FIELD_OF_VIEW_HELP)
    return _with_classification_options(parser)


def _with_classification_options(parser):
    """What predict and classify share: the uncertain class, parts, exit codes, the gallery."""
    parser.add_argument("--min-confidence", type=confidence, help=MIN_CONFIDENCE_HELP)
    parser.add_argument("--part", "--shard", dest="part", type=_part, metavar="k/N", help=PART_HELP)
    parser.add_argument("--strict", action="store_true", help=STRICT_HELP)
    parser.add_argument("--gallery", action="store_true", help=GALLERY_HELP)
    return parser


def classify_parser() -> OneLineParser:
    parser = OneLineParser(prog=f"{TRAINER} classify",
                           description="Classify a catalogue of galaxies (ra, dec [, objid, petroR90_r]): radii "
                                       "looked up in SDSS, cutouts fetched at the model's field of view, a "
                                       "classified catalogue written.", epilog=EXIT_CODES)
    parser.add_argument("catalogue", metavar="CATALOGUE",
                        help="CSV, ECSV, FITS or VOTable with ra and dec in degrees; optional objid, "
                             "petroR90_r / petroR90_g (arcsec), label")
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--out", default="classified.csv",
                        help=TABLE_HELP.format("classified.csv") + "; cutouts are cached in OUT_cutouts/")
    parser.add_argument("--no-login", action="store_true",
                        help="look radii up with the SkyServer SQL search, no SciServer account")
    parser.add_argument("--data-release", type=data_release, default="DR15", help="SDSS data release (default DR15)")
    parser.add_argument("--workers", type=bounded_int(1, 64), default=8, help="concurrent cutout downloads (default 8)")
    return _with_classification_options(parser)


def ensemble_parser() -> OneLineParser:
    parser = OneLineParser(prog=f"{TRAINER} ensemble",
                           description="Average saved models (trained with other seeds, or on other machines) into "
                                       "one model that plain Keras loads.")
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="two or more .keras / .h5 models that take the same input")
    parser.add_argument("--out", default="ensemble.keras",
                        help="the combined model; a .h5 of the bare networks is written beside it "
                             "(default ensemble.keras)")
    return parser


def merge_parser() -> OneLineParser:
    parser = OneLineParser(prog=f"{TRAINER} merge",
                           description="Join the OUT.part-k-of-N tables of a predict or classify run split into "
                                       "parts into OUT, refusing missing or duplicated rows.")
    parser.add_argument("out", metavar="OUT", help="the table the parts were written for, e.g. predictions.csv")
    return parser


PARSERS = {"train": train_parser, "evaluate": evaluate_parser, "predict": predict_parser,
           "classify": classify_parser, "ensemble": ensemble_parser, "merge": merge_parser}


# --------------------------------------------------------------------------- the trainer's commands


def _part_or_environment(part):
    from galaxy_classification.inference import parts

    return part if part is not None else parts.part_from_environment()


def _preset(arguments):
    """The preset asked for; with --init-from the finetuning recipe, which the seed network cannot take."""
    if arguments.init_from is not None and arguments.preset == "seed":
        raise UsageError("--preset seed with --init-from: the seed's network is not finetuned; leave --preset out "
                         "(--init-from uses the finetuning recipe)")
    return arguments.preset or ("modern" if arguments.init_from is not None else "seed")


def _action(command, arguments):
    """The library call a parsed trainer command stands for (nothing here imports Keras: a multi-worker
    strategy must be made before TensorFlow's runtime starts)."""
    import quick_cnn_trainer as face
    from galaxy_classification.inference import parts

    def save_ensemble():
        from galaxy_classification.model import files as model_files

        return model_files.save_ensemble(arguments.models, arguments.out)

    actions = {
        "train": lambda: face.train(
            arguments.data, _preset(arguments), arguments.out, arguments.epochs, arguments.batch_size,
            arguments.image_size, arguments.crop, arguments.seed, steps_per_epoch=arguments.steps_per_epoch,
            test_fraction=arguments.test_fraction, field_of_view=arguments.field_of_view,
            ensemble=arguments.ensemble, min_agreement=arguments.min_agreement, distribute=arguments.distribute,
            peer_timeout=arguments.peer_timeout, precision=arguments.precision, init_from=arguments.init_from,
            label_corrections=arguments.label_corrections),
        "evaluate": lambda: face.evaluate(arguments.model, arguments.data, arguments.out, crop=arguments.crop,
                                          field_of_view=arguments.field_of_view, predictions=arguments.predictions),
        "predict": lambda: classified_exit_code(face.predict(
            arguments.paths, arguments.model, arguments.out, crop=arguments.crop,
            field_of_view=arguments.field_of_view, min_confidence=arguments.min_confidence,
            part=_part_or_environment(arguments.part), gallery=arguments.gallery), arguments.strict),
        "classify": lambda: classified_exit_code(face.classify(
            arguments.catalogue, arguments.model, arguments.out, login=not arguments.no_login,
            data_release=arguments.data_release, workers=arguments.workers,
            min_confidence=arguments.min_confidence, part=_part_or_environment(arguments.part),
            gallery=arguments.gallery), arguments.strict),
        "merge": lambda: parts.merge(arguments.out),
        "ensemble": save_ensemble,
    }
    return actions[command]


def trainer_main(argv=None) -> int:
    """``quick_cnn_trainer.py [COMMAND] ...``: train (the default), evaluate, predict, classify, merge, ensemble."""
    from galaxy_classification import quiet

    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    parser = PARSERS[command]()
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up log lines (hidden unless TF_CPP_MIN_LOG_LEVEL is 0 or 1)")
    arguments = parser.parse_args(argv)
    quiet.show_logs(arguments.verbose)
    input_name = {"predict": "PATH", "classify": "CATALOGUE"}.get(command, "--data")
    action = _action(command, arguments)

    def checked_action():
        quiet.check_backend()  # before Keras starts: a misspelt or missing backend would raise from inside it
        return action()

    return run(parser, checked_action, input_name)
