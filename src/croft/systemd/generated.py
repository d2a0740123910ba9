"""The trees croft generates for a site, written where the build composes them from
(`.croft/generated/`, see Site.generated_dir): each layer's service sandboxes and the names
service. Only files that differ are rewritten: their stats drive the incremental build.
"""

from __future__ import annotations

import shutil

from croft.layout import UNIT_DIR
from croft.site.model import Site
from croft.systemd import names, sandbox
from croft.systemd.tree import write_tree


def write(site: Site) -> None:
    names.write_trees(site)
    for name, layer in site.layers.items():
        target = site.generated_dir(name)
        if layer.config.services:
            units = {service.unit_name(n) for n, service in layer.config.services.items()}
            shipped = {unit for unit in units if (layer.path / UNIT_DIR / unit).exists()}
            write_tree(target, sandbox.generate(layer.config.services, shipped))
        elif target.exists():
            shutil.rmtree(target)
