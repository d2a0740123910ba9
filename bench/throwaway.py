"""A throwaway site on a fleet of its own, for the benchmarks that need real machines: the
fleet in a network namespace, its packages through a relay to the Debian mirror on the host's
end of its LAN, `croft deploy` timed, and afterwards nothing left (fleet, keys, CA: the site's
data directory is in its temporary directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fleet tests' relay to the mirror

from tests.fleet.relay import Relay  # noqa: E402

from croft.fleet import fleet as fleets  # noqa: E402
from croft.fleet.rootfs import ssh_key  # noqa: E402
from croft.site.load import load_site  # noqa: E402


@dataclass
class Throwaway:
    site: Path
    fleet: fleets.Fleet
    env: dict[str, str]
    """croft's environment for this site: its SSH key, the site, its data directory."""

    def deploy(self) -> float:
        """`croft deploy` of every machine; its seconds."""
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "croft", "deploy"], env=self.env, check=True, timeout=900)
        return time.monotonic() - started

    def append(self, text: str) -> None:
        with (self.site / "site.toml").open("a") as site_toml:
            site_toml.write("\n" + text)


@contextmanager
def throwaway(name: str, make_site: Callable[[Path], Path], relay_port: int) -> Iterator[Throwaway]:
    fleets.down(name)  # what an interrupted run left
    with tempfile.TemporaryDirectory(prefix=f"croft-{name}-") as tmp:
        site_dir = make_site(Path(tmp) / "site")
        up = fleets.up(load_site(site_dir), name)
        try:
            # The relay listens on the host's end of the fleet's LAN, which exists once it is up.
            with Relay(up.lan.host_address, relay_port) as relay:
                env = {
                    **os.environ,
                    "CROFT_SSH_KEY": str(ssh_key()),
                    "CROFT_SITE": str(site_dir),
                    "XDG_DATA_HOME": str(Path(tmp) / "data"),
                }
                made = Throwaway(site_dir, up, env)
                made.append(f'[packages]\nupstream = "{relay.url}"\n')
                yield made
        finally:
            up.down()
