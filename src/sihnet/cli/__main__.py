"""``python -m sihnet.cli``."""

import sys

from sihnet.cli import main

sys.exit(main())
