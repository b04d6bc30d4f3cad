"""``python -m esbridge``: the same as the ``esbridge`` command."""

import sys

from esbridge.cli import main

sys.exit(main())
