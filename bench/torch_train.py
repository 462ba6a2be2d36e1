"""A plain PyTorch training run doing what ``python3 train.py --epochs E --limit N --val-fraction 0``
does with the original recipe, for the whole-run comparison in bench/speed.py (PyTorch is optional
and never a dependency of tinynet):

    load the IDX files -> the LeNet of torch_lenet.py -> E epochs of SGD(lr=0.01), batch 128,
    cross-entropy, over the first N training images in a new random order each epoch (each batch
    gathered from the uint8 images and scaled to [0, 1]) -> accuracy on the test split, in batches
    of 256 -> the weights saved to a file.

    python3 bench/torch_train.py --data-dir DIR --dataset NAME --limit 6400 --threads 2 --out w.pt
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from tinynet.datasets.idx import load_split  # noqa: E402  (the same IDX reader as train.py)
from torch_lenet import torch_lenet  # noqa: E402


def as_batch(images):
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images).unsqueeze(1).float().div_(255)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="where to save the trained weights")
    args = p.parse_args(argv)

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    train, test = (load_split(args.data_dir, args.dataset, s) for s in ("train", "test"))
    images, labels = train.images[:args.limit], torch.from_numpy(train.labels[:args.limit].astype(np.int64))
    model = torch_lenet(len(train.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        epoch_start = time.perf_counter()
        model.train()
        order = rng.permutation(len(images))
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(as_batch(images[idx])), labels[idx])
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - epoch_start
        print(f"epoch {epoch + 1}/{args.epochs}: {seconds:.1f} s, {len(order) / seconds:.0f} images/s",
              flush=True)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(test.labels), 256):
            logits = model(as_batch(test.images[start:start + 256]))
            correct += int((logits.argmax(1).numpy() == test.labels[start:start + 256]).sum())
    torch.save(model.state_dict(), args.out)
    print(f"test accuracy {correct / len(test.labels):.4f}; total time "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
