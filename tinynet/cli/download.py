"""``tinynet download`` (also ``python3 -m tinynet download``) over ``tinynet.datasets.download``: get EMNIST
data files into a folder, downloaded from NIST or taken from an archive or folder you have."""

import argparse
import sys

from ..datasets.download import OFFICIAL_URL, ensure_dataset, install_from
from ..datasets.idx import SPLITS, DataError
from ..datasets.load import SAMPLE_DATASET


def build_parser(prog=None):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Put NAME-{train,test}-{images-idx3,labels-idx1}-ubyte.gz and NAME-mapping.txt "
                    "into DIR, verified, from the official NIST archive (about 540 MB, resumable) "
                    "or from --from PATH.")
    p.add_argument("--dataset", default="emnist-balanced", metavar="NAME",
                   help="emnist-{balanced,bymerge,byclass,letters,digits,mnist} (default: %(default)s; "
                        "sample, the sample shipped with tinynet, needs no download)")
    p.add_argument("--data-dir", default="data", metavar="DIR",
                   help="folder for the files (default: %(default)s)")
    p.add_argument("--url", default=OFFICIAL_URL, help="archive URL (default: %(default)s)")
    p.add_argument("--from", dest="source", metavar="PATH",
                   help="take the files from this zip archive (gzip.zip) or folder instead")
    p.add_argument("--split", choices=SPLITS, action="append",
                   help="only this split (repeatable; default: train and test)")
    return p


def main(argv=None, prog="tinynet download"):
    """``tinynet download ...``; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    if args.dataset == SAMPLE_DATASET:
        print(f"{SAMPLE_DATASET} ships with tinynet: nothing to download (python3 train.py --dataset "
              f"{SAMPLE_DATASET} uses it as it is)")
        return 0
    splits = tuple(args.split) if args.split else SPLITS
    try:
        if args.source:
            install_from(args.source, args.data_dir, args.dataset, splits=splits)
        else:
            ensure_dataset(args.data_dir, args.dataset, splits=splits, url=args.url)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.dataset} ({', '.join(splits)}) is ready in {args.data_dir}/")
    return 0
