"""``python -m g2gsim.cli``: the ``g2gsim`` command."""

from g2gsim.cli import main

main()
