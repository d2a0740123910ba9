"""The deploy view: what a deploy knows of each machine without loading the site, and when it is
made again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from croft import pipeline
from croft.build import stamp
from croft.deploy import target
from croft.site.load import load_site


def test_the_kept_view_is_the_sites(example_site: Path) -> None:
    site = load_site(example_site)
    saved = target.save(site)
    assert saved == target.view(site)
    assert target.load(example_site) == saved
    for name, machine in site.machines.items():
        kept = saved.targets[name]
        assert kept == target.of(site, machine)
        assert kept.ssh == site.ssh_target(machine)
        assert kept.build == example_site.resolve() / ".croft" / "build" / name
    assert saved.select(("web1",)) == [saved.targets["web1"]]
    assert saved.select(("web1", "nosuch")) is None  # loading the site names what is unknown


@pytest.mark.parametrize(
    "change",
    ["site.toml", "machines/web1.toml", "layers/web/layer.toml", "key", "garbage"],
)
def test_a_view_is_not_used_once_what_it_was_made_from_changed(
    example_site: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    target.save(load_site(example_site))
    assert target.load(example_site) is not None
    time.sleep(0.01)  # another mtime
    if change == "key":  # the key the fleet tells croft to use
        monkeypatch.setenv("CROFT_SSH_KEY", "/elsewhere/id_ed25519")
    elif change == "garbage":
        (example_site / ".croft/cache/deploy-view.json").write_text("{not json")
    else:
        path = example_site / change
        path.write_text(path.read_text() + "\n# edited\n")
    assert target.load(example_site) is None


def test_a_deploy_after_an_edit_loads_neither_the_site_nor_the_builder(example_site: Path) -> None:
    """The deploy view and the quick build are all it needs (the model alone costs ~50 ms)."""
    # The sessions prepare opens ahead go to a closed port on loopback (never used here).
    for machine in (example_site / "machines").glob("*.toml"):
        machine.write_text(re.sub(r'(?m)^address = "10\.77\.0\.', 'address = "127.0.0.', machine.read_text()))
    site_toml = example_site / "site.toml"
    site_toml.write_text(site_toml.read_text().replace("[ssh]\n", "[ssh]\nport = 9\n"))
    # The first loads the site and keeps the view (and the build of this selection, its stamp).
    for session in pipeline.prepare(str(example_site), ("web1",)).sessions.values():
        session.cancel()
    about = example_site / "machines/web1/usr/local/share/www/about.html"
    about.write_text("<p>edited</p>\n")
    time.sleep(stamp.RACY_NS / 1e9)
    script = (
        "import sys\n"
        "from croft import pipeline\n"
        f"prepared = pipeline.prepare({str(example_site)!r}, ('web1',))\n"
        "for session in prepared.sessions.values():\n"
        "    session.cancel()\n"
        "print([t.name for t in prepared.targets], prepared.builds['web1'].digest)\n"
        "print(sorted({'croft.site.model', 'croft.build.builder'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "CROFT_BUILD_SERVER": "0"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout.splitlines()
    built = (example_site / ".croft/build/web1/digest").read_text().strip()
    assert out == [f"['web1'] {built}", "[]"]
    assert (
        "<p>edited</p>"
        in (example_site / ".croft/build/web1/root/usr/local/share/www/about.html").read_text()
    )


def test_a_changed_deploy_setting_reaches_the_next_deploy(example_site: Path) -> None:
    first = pipeline.prepare(str(example_site), ())
    assert first.view.targets["web1"].confirm == 30
    time.sleep(0.01)
    site_toml = example_site / "site.toml"
    site_toml.write_text(site_toml.read_text().replace("[deploy]\n", "[deploy]\nconfirm_seconds = 5\n"))
    again = pipeline.prepare(str(example_site), ())
    assert again.view.targets["web1"].confirm == 5
    assert target.load(example_site) == again.view
