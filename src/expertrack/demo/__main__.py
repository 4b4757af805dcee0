"""``python -m expertrack.demo``: the same command as ``expertrack demo``."""

from expertrack.cli.demo import demo

if __name__ == "__main__":
    demo(prog_name="python -m expertrack.demo")
