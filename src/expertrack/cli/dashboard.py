"""``expertrack ui``: serve the live local dashboard."""

from __future__ import annotations

from pathlib import Path

import click

from expertrack.cli.params import LOCATION


@click.command("ui")
@click.option(
    "--dir",
    "directory",
    type=LOCATION,
    default=None,
    help="Tracking directory or postgresql:// URL (default: $EXPERTRACK_DIR, else ./expertrack-runs).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but loopback exposes every run to the network (warned).",
)
def ui(directory: Path | str | None, port: int, host: str) -> None:
    """Serve the live local dashboard: runs table, charts, MoE view, run pages.

    It only reads the store, needs no internet, and updates live while runs log.
    """
    from expertrack.store.location import reading_location

    try:
        from expertrack.dashboard.app import plotly_js
        from expertrack.dashboard.server import ListenError, serve
    except ImportError as exc:
        raise click.ClickException(f"{exc}; the dashboard needs: pip install 'expertrack[dashboard]'") from None
    if plotly_js() is None:
        raise click.ClickException("plotly's bundled plotly.min.js is missing: pip install 'expertrack[dashboard]'")
    try:
        serve(reading_location(directory), host=host, port=port)
    except ListenError as exc:
        raise click.ClickException(str(exc)) from None
