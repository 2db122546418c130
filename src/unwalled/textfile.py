"""Text files the user gives (configs, contracts, probes, suites, data), read
with an error that names the file and the fix instead of a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unwalled.errors import ConfigError


def read_text(path: str | Path, *, key: str | None = None, source: str | None = None
              ) -> str:
    """The file's text (UTF-8). ``source``: the file that named this one, when
    the error belongs there (with ``key``, the place in it)."""
    path = Path(path)
    named = f"{path} is" if source else "is"  # the error names the file already
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{named} not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}).",
            file=source or str(path), key=key,
            fix="save the file as UTF-8 (most editors offer it under 'Save as').",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror or exc}." if not source
                          else f"cannot read {path}: {exc.strerror or exc}.",
                          file=source or str(path), key=key,
                          fix="give the path of a readable file.") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error
    (PyYAML keeps the last one without a word, so a typo'd override is lost)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one mapping; keep "
                    "one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """YAML as ``yaml.safe_load`` reads it, with duplicate keys refused."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
