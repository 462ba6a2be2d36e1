"""Data in EMNIST's IDX format: reading and checking the files (``idx``), the verified, resumable
download of the official archive (``download``), the one call that finds, downloads and loads a
data set by name, and the real sample shipped with tinynet (``load``), and the augmentation of
training batches (``augment``)."""
