"""The studies' protocols shipped as plain configs (`cxrfast/recipes/*.toml`): sweeps a user
points at their own data, and fine-tuning presets. A recipe's first comment line says what it
is, its second (`# kind: sweep`, `# kind: pretrain` or `# kind: finetune`) how it is used; `cxrfast recipes` lists
them and prints one to copy and edit."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cxrfast.errors import ConfigError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str  # sweep, pretrain or finetune
    summary: str
    path: Path

    def values(self) -> dict:
        with open(self.path, "rb") as f:
            return tomllib.load(f)


def recipes() -> dict[str, Recipe]:
    found = {}
    for path in sorted(RECIPES.glob("*.toml")):
        summary, kind = (line.removeprefix("#").strip() for line in path.read_text(encoding="utf-8").splitlines()[:2])
        found[path.stem] = Recipe(path.stem, kind.removeprefix("kind:").strip(), summary, path)
    return found


def recipe(name: str, kind: str) -> Recipe:
    """The shipped recipe `name` of `kind`, else a ConfigError naming those there are."""
    known = {n: r for n, r in recipes().items() if r.kind == kind}
    if name not in known:
        raise ConfigError(f"no {kind} recipe {name!r}; there are: {', '.join(known) or 'none'} (cxrfast recipes)")
    return known[name]


def config_file(given: str | os.PathLike, kind: str) -> Path:
    """A config file as given, or, where no such file exists, the path of the recipe of that name."""
    path = Path(given)
    if path.is_file() or path.suffix in (".toml", ".yaml", ".yml"):
        return path  # a missing file keeps its own error
    return recipe(str(given), kind).path
