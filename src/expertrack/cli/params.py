"""Click parameter types shared by the commands (and the top-level ``--dir``): light, imported by cli/main.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


class Location(click.ParamType):
    """A tracking directory (a ``Path``) or a ``postgresql://`` URL (kept as the string: a path would fold its
    ``//``). Shown in help as DIR|URL."""

    name = "DIR|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        from expertrack.store.location import is_postgres

        if isinstance(value, Path) or not is_postgres(value):
            path = Path(value)
            if path.exists() and not path.is_dir():
                self.fail(f"{path} is a file, not a directory", param, ctx)
            return path
        return str(value)


LOCATION = Location()
