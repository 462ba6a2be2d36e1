"""``python3 -m tinynet COMMAND ...``: the ``tinynet`` command (``tinynet.cli.main``)."""

from .cli.main import main

raise SystemExit(main())
