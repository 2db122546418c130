"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ConfigOption = Annotated[Optional[str], typer.Option(
    "--config", "-c", help="Path to unwalled.yaml (else $UNWALLED_CONFIG, ./unwalled.yaml, "
                           "or the built-in default route on the embedded model).")]
