"""Building the scoring service's Bento, as a resource.

``bentofile.yaml`` is the one list of what the Bento contains: ``stage`` copies exactly the
files its ``include`` patterns match into a fresh build folder (the bundle is written into
that folder afterwards, by the asset), and ``build`` runs ``bentoml build`` there into
``$BENTOML_HOME``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from fraud_assets import settings
from fraud_assets.lib.contracts import SERVICE_BUNDLE_DIR

BENTOFILE = "bentofile.yaml"


def bento_files(project_root: Path) -> list[Path]:
    """The project files that ``bentofile.yaml``'s include patterns match (relative paths),
    minus the bundle, which each build writes anew."""
    import yaml

    spec = yaml.safe_load((project_root / BENTOFILE).read_text())
    found: set[Path] = set()
    for pattern in spec.get("include", []):
        for path in project_root.glob(pattern):
            rel = path.relative_to(project_root)
            if path.is_file() and "__pycache__" not in rel.parts:
                found.add(rel)
    return sorted(p for p in found if not p.is_relative_to(SERVICE_BUNDLE_DIR))


class BentoBuilder(dg.ConfigurableResource):
    """Stages and builds the Bento; the store is ``bentoml_home``."""

    project_root: str
    bentoml_home: str

    @classmethod
    def from_settings(cls) -> BentoBuilder:
        return cls(project_root=str(settings.PROJECT_ROOT), bentoml_home=settings.BENTOML_HOME)

    def stage(self, folder: Path) -> Path:
        """A fresh build folder with the service's source and the bentofile; returns the
        folder where the bundle goes."""
        root = Path(self.project_root)
        if folder.exists():
            shutil.rmtree(folder)
        for rel in [*bento_files(root), Path(BENTOFILE)]:
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, target)
        return folder / SERVICE_BUNDLE_DIR

    def build(self, folder: Path) -> str:
        """``bentoml build`` of a staged folder; returns the Bento tag."""
        os.environ["BENTOML_HOME"] = self.bentoml_home  # bentoml reads its store from here
        import bentoml

        bento = bentoml.bentos.build_bentofile(str(folder / BENTOFILE), build_ctx=str(folder))
        return str(bento.tag)

    def bento_path(self, tag: str) -> str:
        """The built Bento's folder in the store (``bentoml serve`` takes it as a target)."""
        os.environ["BENTOML_HOME"] = self.bentoml_home
        import bentoml

        return str(bentoml.get(tag).path)
