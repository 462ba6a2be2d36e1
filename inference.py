"""Predict characters with a trained LeNet: ``python3 inference.py --input PATH`` evaluates a test set
(data folder or IDX file), or reads your own image files or a .npy array.

A thin wrapper over ``tinynet.cli.infer`` (installed as ``tinynet-infer``), the command line of
``tinynet.predict.predictor``; every option is documented by ``--help``.
"""

from tinynet.cli.infer import main

if __name__ == "__main__":
    raise SystemExit(main())
