"""``python -m apfed.cli``: the ``apfed`` command."""

from apfed.cli import main

main()
