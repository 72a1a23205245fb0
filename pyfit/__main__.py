"""``python -m pyfit``: the same as the ``pyfit`` command."""

from .cli import main

raise SystemExit(main())
