"""What tinynet writes and reads on disk, below everything that does: atomic writes (``atomic``),
``.npy`` headers checked before NumPy allocates (``npyfile``), checkpoints (``checkpoint``: a
model's weights and description in one ``.npz``, never unpickled) and PNG plots (``plots``)."""
