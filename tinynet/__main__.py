"""``python3 -m tinynet download ...``: get EMNIST data files (``tinynet.cli.download``)."""

from tinynet.cli.download import main

raise SystemExit(main())
