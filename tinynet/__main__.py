"""``python3 -m tinynet download ...``: get EMNIST data files (``tinynet.cli.download``)."""

from .cli.download import main

raise SystemExit(main())
