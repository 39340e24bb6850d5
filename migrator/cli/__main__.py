"""``python -m migrator.cli`` is the ``migrator`` console script."""

import sys

from migrator.cli import main

sys.exit(main())
