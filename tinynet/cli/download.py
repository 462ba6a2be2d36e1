"""The command line ``python3 -m tinynet download`` over ``tinynet.download``: get EMNIST data files
into a folder, downloaded from NIST or taken from an archive or folder you have."""

import argparse
import sys

from ..data import SPLITS, DataError
from ..download import OFFICIAL_URL, ensure_dataset, install_from


def main(argv=None):
    """``python3 -m tinynet download ...``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python3 -m tinynet",
                                     description="Get EMNIST data files.")
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser(
        "download", help="download the NIST EMNIST archive (or use --from) and extract one dataset",
        description="Put NAME-{train,test}-{images-idx3,labels-idx1}-ubyte.gz and NAME-mapping.txt "
                    "into DIR, verified, from the official NIST archive or from --from PATH.")
    download.add_argument("--dataset", default="emnist-balanced", metavar="NAME",
                          help="emnist-{balanced,bymerge,byclass,letters,digits,mnist} "
                               "(default: %(default)s)")
    download.add_argument("--data-dir", default="data", metavar="DIR",
                          help="folder for the files (default: %(default)s)")
    download.add_argument("--url", default=OFFICIAL_URL, help="archive URL (default: %(default)s)")
    download.add_argument("--from", dest="source", metavar="PATH",
                          help="take the files from this zip archive (gzip.zip) or folder instead")
    download.add_argument("--split", choices=SPLITS, action="append",
                          help="only this split (repeatable; default: train and test)")
    args = parser.parse_args(argv)
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
