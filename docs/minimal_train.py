"""Train the fast LeNet with nothing around tinynet's training step but the data loader.

    python3 docs/minimal_train.py --dataset sample    # the sample shipped with tinynet: no download
    python3 docs/minimal_train.py                     # EMNIST-Balanced in data/ (tinynet download)
    python3 docs/minimal_train.py --data-dir DIR --dataset NAME

The model is ``tinynet.nn.model.lenet()`` (the fast layers, ReLU fused into max-pooling), the
optimiser SGD with learning rate 0.01 and momentum 0.9, the batches 128 images drawn at random; no
batch split over threads, no validation split, no schedule, no augmentation. On the development data set emnist-bymerge-resplit
(47 classes), 300 steps (about 40% of an epoch) reached 77% accuracy on the first 2,000 test images
in 2.3 minutes on a busy 2-core machine.
Everything ``train.py`` adds (validation split, learning-rate schedules, augmentation, checkpoints
and resume, Ctrl-C, divergence checks, threads, progress bars, plots) lives in
``tinynet/training/trainer.py``, around the same :func:`tinynet.nn.step.train_step`.
"""

import argparse

import numpy as np

from tinynet.datasets.idx import to_float
from tinynet.datasets.load import load_dataset
from tinynet.nn.layers import SoftmaxCrossEntropy
from tinynet.nn.model import lenet
from tinynet.nn.optim import SGD
from tinynet.nn.step import train_step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data", help="folder of the IDX files (default: data)")
    p.add_argument("--dataset", default="emnist-balanced",
                   help="dataset name, or sample: the sample shipped with tinynet (default: emnist-balanced)")
    p.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    p.add_argument("--train-images", type=int, default=None,
                   help="draw batches from the first N training images only (default: all)")
    p.add_argument("--test-images", type=int, default=2000, help="test images to score (default: 2000)")
    args = p.parse_args(argv)

    splits = load_dataset(args.dataset, args.data_dir, download=False)  # DataError if files are missing
    train, test = splits["train"], splits["test"]  # uint8 (N, H, W) images (EMNIST: 28x28), labels 0..K-1
    rng = np.random.default_rng(0)
    model = lenet(len(train.classes), rng=rng, input_shape=(1, *train.images.shape[1:]))
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(lr=0.01, momentum=0.9)

    n = args.train_images or len(train.labels)
    for step in range(1, args.steps + 1):
        batch = rng.choice(n, size=128, replace=False)
        loss, _ = train_step(model, loss_fn, optimizer, to_float(train.images[batch]), train.labels[batch])
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: loss {loss:.4f}")

    images, labels = test.images[:args.test_images], test.labels[:args.test_images]
    correct = 0
    for start in range(0, len(labels), 250):  # batches keep the forward pass's memory small
        logits = model.forward(to_float(images[start:start + 250]), train=False)
        correct += int(np.sum(logits.argmax(axis=1) == labels[start:start + 250]))
    print(f"test accuracy {correct / len(labels):.4f} on {len(labels)} images")


if __name__ == "__main__":
    main()
