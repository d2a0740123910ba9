"""[logs], [alerts] and alerts/*.toml are checked where they are written, with a hint; and the
journal travels over the overlay only when every machine is in it."""

from __future__ import annotations

from pathlib import Path

from croft.site import logs
from croft.site.load import load_site
from tests.site.test_load import assert_found, problems


def append(file: Path, text: str) -> None:
    file.write_text(file.read_text() + "\n" + text)


def test_the_journal_and_its_notifications_are_checked_in_site_toml(example_site: Path) -> None:
    append(
        example_site / "site.toml",
        '[logs]\ncollector = "db9"\nkeep = "a month"\nmax_use = "4 GB"\n\n'
        '[alerts.notify.phone]\nwebhook = "ftp://x"\n\n[alerts.notify.ops]\nmail = ["nobody"]\n\n'
        "[alerts.notify.nothing]\n",
    )
    found = problems(example_site)
    expected = [
        "logs.collector: no machine 'db9'",
        "logs.keep: 'a month' is not a duration",
        "logs.max_use: '4 GB' is not a size",
        "alerts: mail needs a relay",
        "alerts.notify.phone.webhook: 'ftp://x' is not an http(s) URL",
        "alerts.notify.ops.mail.0: 'nobody' is not a mail address",
        "alerts.notify.nothing: says nowhere to send",
    ]
    assert_found(found, expected, "site.toml:")


def test_a_malformed_rule_is_refused_with_its_file_and_line(example_site: Path) -> None:
    append(
        example_site / "site.toml",
        '[logs]\ncollector = "db1"\n\n[alerts.notify.phone]\nwebhook = "http://h/"\n',
    )
    rules = example_site / "alerts"
    rules.mkdir()
    (rules / "ssh.toml").write_text('when = "match"\nregex = "Failed (password"\nnotify = ["pager"]\n')
    (rules / "quiet.toml").write_text('when = "silent"\nafter = "soon"\nunits = ["x.service"]\n')
    (rules / "full.toml").write_text('when = "disk"\nprecent = 80\n')
    (rules / "odd.toml").write_text('when = "sometimes"\n')
    found = problems(example_site)
    expected = [
        "ssh.toml:2: regex: not a regular expression",
        "ssh.toml:3: notify.0: no [alerts.notify.pager] in site.toml",
        "quiet.toml:2: after: 'soon' is not a duration",
        "quiet.toml:3: units: `units` means nothing to a silent rule",
        "full.toml:2: precent: unknown key",
        "odd.toml:1: when:",
    ]
    assert_found(found, expected)


def test_alerts_need_the_journal(example_site: Path) -> None:
    (example_site / "alerts").mkdir()
    (example_site / "alerts/units.toml").write_text('when = "unit-failed"\n')
    found = problems(example_site)
    assert any("units.toml:1: when: an alert without the site's journal" in problem for problem in found), (
        found
    )


def test_the_journal_goes_over_the_overlay_only_when_every_machine_is_in_it(example_site: Path) -> None:
    site_toml = example_site / "site.toml"
    append(site_toml, '[logs]\ncollector = "db1"\n\n[network.overlay]\nmachines = ["db1", "web1"]\n')
    site = load_site(example_site, use_cache=False)
    assert logs.transport(site) is logs.Transport.TLS and logs.collector_host(site) == "10.77.0.13"
    site_toml.write_text(site_toml.read_text().replace('machines = ["db1", "web1"]\n', ""))
    site = load_site(example_site, use_cache=False)
    assert logs.transport(site) is logs.Transport.OVERLAY and logs.collector_host(site).startswith("10.99.0.")
    assert logs.parse_duration("90min") == 5400 and logs.parse_size("2G") == 2 << 30
