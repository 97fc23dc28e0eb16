"""``python -m magnetdml`` is the ``magnetdml`` command."""

import sys

from .cli import main

sys.exit(main())
