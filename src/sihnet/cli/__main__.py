"""``python -m sihnet.cli``."""

from sihnet.cli import main

main()
