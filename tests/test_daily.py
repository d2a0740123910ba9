"""croft daily: the site checked first (a broken site publishes nothing), and its timer's units."""

from __future__ import annotations

import subprocess
from pathlib import Path

from croft import daily
from croft.site.load import load_site


def test_a_broken_site_is_reported_and_nothing_is_published(example_site: Path) -> None:
    (example_site / "packages").mkdir()
    (example_site / "packages/tool.toml").write_text('version = "1"\n')
    (example_site / "layers/web/usr/local/share/www/index.html.j2").write_text("{{ nowhere.defined }}\n")
    result = daily.run_daily(load_site(example_site, use_cache=False))
    assert not result.ok and any("nowhere" in problem for problem in result.problems)
    assert result.published is None and result.verdicts == []
    assert not (example_site / ".croft/repository").exists()


def test_the_timer_and_its_service_are_valid_units(example_site: Path, tmp_path: Path) -> None:
    site = load_site(example_site)
    units = daily.units(site, "*-*-* 03:00")
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    assert "OnCalendar=*-*-* 03:00" in units["croft-daily-homelab.timer"]
    assert f"--site {site.root} daily" in units["croft-daily-homelab.service"]
    verified = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name in units)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
