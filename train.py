"""Train the LeNet: ``python3 train.py --epochs 20`` runs the original recipe (see README.md).

A thin wrapper over ``tinynet.cli.train`` (installed as ``tinynet-train``), the command line of
``tinynet.training.trainer.train``; every option is documented by ``--help``.
"""

from tinynet.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
