"""``python -m jaxtl ...``: the ``jaxtl`` command (``jaxtl/cli.py``)."""

from jaxtl.cli import main

main(prog="jaxtl")
