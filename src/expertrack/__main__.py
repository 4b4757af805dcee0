"""``python -m expertrack``: the ``expertrack`` command, for environments where its script is not on PATH."""

from expertrack.cli.main import main

if __name__ == "__main__":
    main()
