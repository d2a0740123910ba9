"""A synthetic croft site of the size the benchmarks are judged at: 20 machines x 500 files.

Each machine gets 500 files, 10% of them templates: 400 from a `common` layer shared by all,
50 from one of four `role-N` layers, and 50 of its own. Templates read site, layer and machine
variables and facts, as real ones do. Fake facts are written so that a build needs no machine.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SHARE = "usr/local/share/bench"
ROLES = 4

TEMPLATE = """\
# {name}, rendered for {{{{ machine.name }}}} ({{{{ machine.address }}}})
listen = {{{{ port }}}}
workers = {{{{ facts.nproc }}}}
role = {{{{ role }}}}
{{% for peer in peers %}}peer = {{{{ peer }}}}
{{% endfor %}}
"""


def _text(rng: random.Random, size: int) -> str:
    words = ["alpha", "beta", "gamma", "delta", "kernel", "socket", "unit", "layer", "tree", "route"]
    out: list[str] = []
    while sum(map(len, out)) < size:
        out.append(" ".join(rng.choice(words) for _ in range(12)) + "\n")
    return "".join(out)


def _tree(root: Path, prefix: str, count: int, templates: int, rng: random.Random) -> None:
    for index in range(count):
        directory = root / SHARE / prefix / f"d{index // 50:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        if index < templates:
            (directory / f"t{index:03d}.conf.j2").write_text(TEMPLATE.format(name=f"{prefix}/t{index:03d}"))
        else:
            (directory / f"f{index:03d}.txt").write_text(_text(rng, rng.randint(200, 4000)))


def facts(name: str, address: str) -> dict[str, object]:
    return {
        "hostname": name,
        "arch": "x86_64",
        "kernel": "6.1.0",
        "os": {"id": "debian", "version_id": "12", "codename": "bookworm"},
        "nproc": 2,
        "memory_mb": 1024,
        "interfaces": [{"name": "host0", "mac": "02:00:00:00:00:01", "addresses": [f"{address}/24"]}],
        "block_devices": [],
        "systemd_version": 252,
    }


def machine_names(count: int) -> list[str]:
    return [f"m{index:02d}" for index in range(1, count + 1)]


def make_site(root: Path, *, machines: int = 20, subnet: str = "10.80.0", port: int = 8080) -> Path:
    """Write the site under root (which must not exist yet) and return it."""
    rng = random.Random(20261122)  # the same site on every run
    root.mkdir(parents=True)
    (root / "site.toml").write_text(
        f'name = "bench"\ndomain = "bench.home.arpa"\n\n[ssh]\nuser = "root"\n\n[vars]\nport = {port}\n'
        'peers = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]\n'
    )
    _tree(root / "layers" / "common", "common", 400, 40, rng)
    for role in range(ROLES):
        layer = root / "layers" / f"role-{role}"
        _tree(layer, f"role-{role}", 50, 5, rng)
        (layer / "layer.toml").write_text(f'[vars]\nrole = "role-{role}"\n')
    (root / "machines").mkdir()
    (root / "facts").mkdir()
    for index, name in enumerate(machine_names(machines)):
        address = f"{subnet}.{index + 11}"
        (root / "machines" / f"{name}.toml").write_text(
            f'address = "{address}"\nlayers = ["common", "role-{index % ROLES}"]\n'
        )
        _tree(root / "machines" / name, name, 50, 5, rng)
        (root / "facts" / f"{name}.json").write_text(json.dumps(facts(name, address), indent=1))
    return root
