"""``python -m emlib.book build|check|export`` (see :mod:`emlib.book.commands`)."""

import sys

from emlib.book.commands import main

sys.exit(main())
