"""``python -m mixexp``: see :mod:`mixexp.cli`."""

import sys

from .cli import main

sys.exit(main())
