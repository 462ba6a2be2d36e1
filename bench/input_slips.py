"""What a slip in preparing the input costs: the bundled LeNet's accuracy on an EMNIST test split
given as it expects it (upright, / 255, light ink on dark), and with each step left out or done
wrong (docs/onnx.md, "The input, exactly").

    python3 bench/input_slips.py --data-dir DIR --name emnist-balanced-unseen

``DIR`` holds ``NAME-test-images-idx3-ubyte[.gz]``, its labels and ``NAME-mapping.txt`` (47
classes, the bundled model's); use images the model was not trained on.
"""

import argparse

import numpy as np

from tinynet.datasets.idx import load_split
from tinynet.files.checkpoint import load_checkpoint
from tinynet.predict.predictor import BUNDLED_MODEL


def accuracy(model, x, labels):
    predicted = np.concatenate([model.forward(x[i:i + 512], train=False).argmax(1)
                                for i in range(0, len(x), 512)])
    return float((predicted == labels).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the folder of the IDX files")
    parser.add_argument("--name", required=True, help="the data set's name, e.g. emnist-balanced-unseen")
    args = parser.parse_args(argv)
    split = load_split(args.data_dir, args.name, "test")  # upright: load_split transposes EMNIST's images
    model, meta, _, _ = load_checkpoint(BUNDLED_MODEL)
    if list(split.classes) != list(meta["classes"]):
        parser.error("the data set's classes are not the bundled model's")
    upright = split.images
    inputs = {
        "as expected: transposed to upright, / 255, light ink on dark": upright / np.float32(255),
        "not transposed (EMNIST's stored orientation)": upright.transpose(0, 2, 1) / np.float32(255),
        "not divided by 255 (0..255 floats)": upright.astype(np.float32),
        "inverted polarity (dark ink on light)": (255 - upright) / np.float32(255),
    }
    print(f"| input | accuracy on {len(upright):,} images |\n|---|---|")
    for what, x in inputs.items():
        print(f"| {what} | {accuracy(model, x.astype(np.float32)[:, None], split.labels):.3f} |")


if __name__ == "__main__":
    main()
