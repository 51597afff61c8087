"""jaxtl's command line in a clone: ``python launch.py --regime=REGIME ...`` is the installed
``jaxtl`` command (``python -m jaxtl``) under the name the docs use; see ``jaxtl/cli.py``."""

from jaxtl.cli import main

if __name__ == "__main__":
    main(prog="launch.py")
