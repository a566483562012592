"""``python -m kubemirror``: the same as the ``kubemirror`` command."""

from kubemirror.cli import main

if __name__ == "__main__":
    main()
