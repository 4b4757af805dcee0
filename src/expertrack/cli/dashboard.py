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
    help="Address to bind. Anything but loopback serves every run to the network: it then needs a token (warned).",
)
@click.option(
    "--token",
    envvar="EXPERTRACK_UI_TOKEN",
    show_envvar=True,
    default=None,
    help="The secret a browser or script presents to read runs (required beyond loopback; at least 16 "
    "characters). Prefer the environment variable: a command line is visible to every user of the machine.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host name the dashboard answers besides its address's own (the name a team reaches it by, "
    "or * for any, e.g. behind a proxy). Repeatable.",
)
def ui(directory: Path | str | None, port: int, host: str, token: str | None, allowed_hosts: tuple[str, ...]) -> None:
    """Serve the live dashboard: runs table, charts, MoE view, run pages.

    It only reads the store, needs no internet, and updates live while runs log. On loopback (the default)
    it needs no token; on any other address it requires one (see docs/team.md).
    """
    from expertrack.store.location import reading_location

    try:
        from expertrack.dashboard.app import plotly_js
        from expertrack.dashboard.server import ListenError, TokenError, serve
    except ImportError as exc:
        raise click.ClickException(f"{exc}; the dashboard needs: pip install 'expertrack[dashboard]'") from None
    if plotly_js() is None:
        raise click.ClickException("plotly's bundled plotly.min.js is missing: pip install 'expertrack[dashboard]'")
    try:
        serve(reading_location(directory), host=host, port=port, token=token, extra_hosts=allowed_hosts)
    except (ListenError, TokenError) as exc:
        raise click.ClickException(str(exc)) from None
