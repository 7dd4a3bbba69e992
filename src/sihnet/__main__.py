"""``python -m sihnet`` (and ``torchrun … -m sihnet train …``): the command line."""

from sihnet.cli import main

main()
