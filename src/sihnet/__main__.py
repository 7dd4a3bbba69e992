"""``python -m sihnet`` (and ``torchrun … -m sihnet train …``): the command line."""

import sys

from sihnet.cli import main

sys.exit(main())
