"""The command line of ``python3 train.py`` (installed as ``tinynet-train``) over
``tinynet.training.trainer.train``: argparse-style errors for bad values, one-line messages for bad data or
run folders, never a traceback for a user's mistake."""

import argparse
import json
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ..datasets.idx import ORIENTATIONS, UPRIGHT_NAMES, DataError
from ..files.checkpoint import CheckpointError
from ..nn.model import PRESETS
from ..nn.optim import SCHEDULES
from ..training.config import BEST_BY, CLASS_BALANCE, INITS, RECIPES, TrainConfig
from ..training.errors import ConfigError, NetworkError, TrainingError
from ..training.runfolder import RunFolder, resume_config
from ..training.runlog import Recorder
from ..training.tensorboard import TensorBoardLog, TensorBoardUnavailable
from ..training.trainer import train
from ..web.watch import DEFAULT_HOST as WATCH_HOST, DEFAULT_PORT as WATCH_PORT
from ..web.watch import make_server as make_watch_server, serve_in_background
from . import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from .serve import port_number


def from_recipe(field):
    """Help text naming ``field``'s value in every recipe, e.g. ``[original: 0.01, strong: 0.05]``."""
    def shown(value):
        return ("on" if value else "off") if isinstance(value, bool) else value

    values = {name: shown(getattr(replace(TrainConfig(), **recipe), field))
              for name, recipe in RECIPES.items()}
    if len(set(values.values())) == 1:
        return f"[every recipe: {next(iter(values.values()))}]"
    return "[" + ", ".join(f"{name}: {value}" for name, value in values.items()) + "]"


def network_of(parser, text):
    """The network --model names: None (the LeNet), a preset's name, or the description a .json
    file holds (read here: the argparse error for one that cannot be read)."""
    if text is None or text in PRESETS:
        return text
    if not text.endswith(".json"):
        parser.error(f"argument --model: {text!r} is neither a preset ({', '.join(PRESETS)}) nor a .json "
                     f"file holding a network's description")
    try:
        with open(text, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        parser.error(f"argument --model: {text}: cannot read it ({e.strerror or e})")
    except ValueError as e:
        parser.error(f"argument --model: {text}: not JSON ({e})")


def build_parser(prog=None):
    """The parser of ``train.py`` / ``tinynet train``: its options in five groups (data, network,
    recipe, run, watching)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a network on IDX image files (EMNIST's, or --dataset sample: the real "
                    "sample shipped with tinynet) - the LeNet (conv 20@5x5, pool, conv 50@5x5, pool, "
                    "dense 500, dense K) unless --model says otherwise. Defaults are the original "
                    "recipe: batch 128, 20 epochs, plain SGD at learning rate 0.01, cross-entropy. "
                    "Options left unset take the value of --recipe; each option's help shows its value "
                    "in every recipe.")
    add_data_options(p)
    add_network_options(p)
    add_recipe_options(p)
    add_run_options(p)
    add_watch_options(p)
    return p


def add_data_options(p):
    """What to train on: the data set, its validation split and an external validation set."""
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default="data",
                   help="folder holding the IDX files and mapping (default: %(default)s)")
    g.add_argument("--dataset", default="emnist-balanced",
                   help="dataset name: files NAME-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz] "
                        "and NAME-mapping.txt in --data-dir, images of any size; or sample: the real "
                        "sample shipped with tinynet, 3,008 training and 752 test images, offline "
                        "(default: %(default)s)")
    g.add_argument("--orientation", choices=ORIENTATIONS, default=None,
                   help="how the IDX files store each image: transposed (EMNIST's way) or upright "
                        "(MNIST, Fashion-MNIST, KMNIST) (default: upright for names starting "
                        f"{', '.join(UPRIGHT_NAMES)}; transposed for any other)")
    g.add_argument("--no-download", action="store_true",
                   help="fail with instructions instead of downloading missing files")
    g.add_argument("--val-fraction", type=fraction, default=None,
                   help="fraction of the training set held out (stratified, seeded) for validation "
                        f"{from_recipe('val_fraction')}")
    g.add_argument("--val-data", metavar="DIR", default=None,
                   help="also validate every epoch on the test split of another labelled set in DIR "
                        "whose classes match the training set's; logged as external_*")
    g.add_argument("--val-dataset", metavar="NAME", default=None, help="that set's dataset name")
    g.add_argument("--best-by", choices=sorted(BEST_BY), default=None,
                   help="which validation picks best.npz: val (held-out accuracy), val-balanced "
                        f"(held-out mean per-class recall), external (--val-data accuracy) {from_recipe('best_by')}")
    g.add_argument("--limit", type=positive_int, default=None,
                   help="train on only the first N training images (quick looks)")


def add_network_options(p):
    """What to train: --model."""
    g = p.add_argument_group("network")
    g.add_argument("--model", metavar="NAME|FILE.json", default=None,
                   help="the network: a preset, lenet (the LeNet above) or mlp (dense 300, dense 100, "
                        "dense K: no convolution), or a .json file holding a network's description "
                        "(its layers: docs/training.md); the input size is the data's (default: lenet)")


def add_recipe_options(p):
    """How to train: --recipe and the options it sets (each help shows its value in every recipe)."""
    g = p.add_argument_group("recipe")
    g.add_argument("--recipe", choices=sorted(RECIPES), default="original",
                   help="a named set of the options below; explicit options override it "
                        "(default: %(default)s)")
    g.add_argument("--epochs", type=positive_int, default=None,
                   help=f"passes over the training set {from_recipe('epochs')}")
    g.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"images per SGD step {from_recipe('batch_size')}")
    g.add_argument("--lr", type=positive_float, default=None,
                   help=f"(peak) learning rate {from_recipe('lr')}")
    g.add_argument("--lr-schedule", choices=SCHEDULES, default=None,
                   help="learning rate over training: constant; step (x0.1 at 50%%, x0.01 at 75%%); "
                        "cosine (to 0); one-cycle (warm-up over 30%%, then cosine) "
                        f"{from_recipe('lr_schedule')}")
    g.add_argument("--momentum", type=fraction, default=None,
                   help=f"SGD momentum, 0 = none {from_recipe('momentum')}")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help=f"Nesterov momentum (needs --momentum > 0) {from_recipe('nesterov')}")
    g.add_argument("--weight-decay", type=non_negative_float, default=None,
                   help=f"L2 weight decay on weights (not biases) {from_recipe('weight_decay')}")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random shifts (+-2 px), rotations (+-10 deg), scaling (+-10%%) and shear "
                        f"of each training image {from_recipe('augment')}")
    g.add_argument("--augment-strength", type=positive_float, default=None,
                   help="scale of every augmentation range (2: shifts +-4 px, rotations +-20 deg, "
                        f"...) {from_recipe('augment_strength')}")
    g.add_argument("--class-balance", choices=CLASS_BALANCE, default=None,
                   help="for a model used on balanced classes: prior = correct the logits by the "
                        "training set's class frequencies (logit adjustment; stored in the checkpoint "
                        "and applied by every prediction); sample = draw every class equally often "
                        f"while training {from_recipe('class_balance')}")
    g.add_argument("--label-smoothing", type=fraction, default=None,
                   help="spread this much target probability over all classes "
                        f"{from_recipe('label_smoothing')}")
    g.add_argument("--dropout", type=fraction, default=None,
                   help=f"dropout probability before the last layer, 0 = none {from_recipe('dropout')}")
    g.add_argument("--init", choices=INITS, default=None,
                   help="weight initialisation (the output layer is always Glorot) "
                        f"{from_recipe('init')}")


def add_run_options(p):
    """The run itself: its seed, folder, resuming, threads and progress bars."""
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for every random choice of the run (default: %(default)s)")
    g.add_argument("--name", default=None,
                   help="run folder name under --runs-dir (default: date-time, recipe and --model)")
    g.add_argument("--runs-dir", default="runs", help="where run folders go (default: %(default)s)")
    g.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run saved in RUN_DIR (its own configuration; --epochs may "
                        "extend it, --threads may change)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="threads sharing the fixed slices of every batch; results do not depend "
                        "on it (default: all cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def add_watch_options(p):
    """Watching a run: the live training page and TensorBoard (docs/watch.md)."""
    g = p.add_argument_group("watching")
    g.add_argument("--watch", action="store_true",
                   help="serve a live page of this run (and the others in --runs-dir) while it "
                        "trains; prints its address")
    g.add_argument("--watch-port", metavar="PORT", type=port_number, default=WATCH_PORT,
                   help="--watch's port, 0 for any free one (default: %(default)s)")
    g.add_argument("--watch-host", metavar="HOST", default=WATCH_HOST,
                   help="--watch's address (default: %(default)s, this machine only)")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into RUN_DIR/tensorboard (needs "
                        "tensorboardX: pip install \"tinynet[tensorboard]\")")


def start_watching(args, run_dir):
    """The callbacks ``--watch`` / ``--tensorboard`` ask for, and the page's server (or None),
    already serving in a background thread. Raises OSError (port in use) or
    TensorBoardUnavailable before any training."""
    callbacks, server = [], None
    if args.tensorboard:
        callbacks.append(TensorBoardLog())
    if args.watch:
        server = make_watch_server(run_dir.parent, args.watch_host, args.watch_port, focus=run_dir.name)
        serve_in_background(server)
        print(f"watch this run at {server.url}", flush=True)
        callbacks.append(Recorder())
    return callbacks, server


def config_from_args(args):
    """The TrainConfig that the parsed arguments describe (recipe first, explicit options on top).
    ConfigError (worded for the command line by ``as_options()``) for values training cannot use."""
    overrides = {k: v for k, v in vars(args).items()
                 if k in TrainConfig.__dataclass_fields__ and v is not None}
    return TrainConfig(**{**RECIPES[args.recipe], **overrides})


def main(argv=None, prog=None):
    """``python3 train.py`` / ``tinynet train``; returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        parser.error(e.as_options())
    network = network_of(parser, args.model)
    if args.resume:
        if args.model is not None:
            parser.error("--model does not apply to --resume (a resumed run trains the network of its "
                         "last.npz)")
        run_dir = Path(args.resume)
        try:  # the saved run's configuration; --epochs and --threads replace its own when given
            config = resume_config(run_dir, args.epochs, args.threads)
        except TrainingError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    else:
        model = "" if args.model is None else "-" + Path(args.model).stem
        name = args.name or f"{datetime.now():%Y%m%d-%H%M%S}-{args.recipe}{model}"
        run_dir = Path(args.runs_dir) / name
        found = RunFolder(run_dir).run_files()  # what the library would refuse, in the command line's words
        if found:
            resume = f"--resume {run_dir} or " if "last.npz" in found else ""
            parser.error(f"run folder {run_dir} already holds a run; use {resume}another --name")
    try:
        callbacks, server = start_watching(args, run_dir)
    except TensorBoardUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # --watch-port in use
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        result = train(config, run_dir, resume=bool(args.resume), download=not args.no_download,
                       progress=not args.no_progress, callbacks=callbacks, network=network)
    except NetworkError as e:
        print(f"error: --model {args.model or 'lenet'}: {e}", file=sys.stderr)
        return 1
    except (DataError, TrainingError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0 if result["status"] == "finished" else 130
