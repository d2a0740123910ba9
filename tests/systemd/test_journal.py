"""What croft generates for the site's journal and alerts: drop-ins for Debian's journal-remote
and journal-upload, the collector's state and retention, certificates from the site's CA that
openssl verifies (keys shipped as secrets), and the alerts' compiled rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from croft.build import builder
from croft.layout import UNIT_DIR
from croft.site.load import load_site
from croft.systemd import alerts, generated, journal

LOGS = (
    '[logs]\ncollector = "db1"\nkeep = "14d"\nmax_use = "2G"\n\n[alerts]\nsmtp = "mail.lan"\n\n'
    '[alerts.notify.phone]\nwebhook_file = "phone.url"\nformat = "ntfy"\n\n'
    '[alerts.notify.ops]\nmail = ["ops@example.org"]\n'
)


def append(file: Path, text: str) -> None:
    file.write_text(file.read_text() + "\n" + text)


def test_without_the_overlay_the_journal_travels_over_tls_with_the_sites_ca(example_site: Path) -> None:
    append(example_site / "site.toml", LOGS)
    (example_site / "phone.url").write_text("https://ntfy.example.org/secret-topic\n")
    (example_site / "alerts").mkdir()
    (example_site / "alerts/units.toml").write_text('when = "unit-failed"\nnotify = ["phone"]\n')
    (example_site / "alerts/ssh.toml").write_text(
        'when = "match"\nfields = {SYSLOG_IDENTIFIER = "sshd"}\npriority = "err"\n'
    )
    site = load_site(example_site, use_cache=False)
    results = builder.build(site, site.select([]))
    root = example_site / ".croft/build"
    web1, db1 = root / "web1/root", root / "db1/root"
    upload = (web1 / UNIT_DIR / f"{journal.UPLOAD}.d/croft.conf").read_text()
    assert "--url=https://10.77.0.13:19532" in upload and "LoadCredential=machine.key:" in upload
    assert journal.UPLOAD_LOOP in upload and "WatchdogSec=0" in upload
    remote = (db1 / UNIT_DIR / f"{journal.REMOTE}.d/croft.conf").read_text()
    assert "--listen-http=-3" in remote and f"BindPaths={journal.HOST_DIRECTORY}:" in remote
    # socat checks clients' certificates (journal-remote cannot) and passes them on over loopback.
    socket = (db1 / UNIT_DIR / f"{journal.REMOTE_SOCKET}.d/croft.conf").read_text()
    assert "ListenStream=\nListenStream=127.0.0.1:19533" in socket
    tls = (db1 / UNIT_DIR / journal.TLS_UNIT).read_text()
    assert "OPENSSL-LISTEN:19532," in tls and "verify=1" in tls and "TCP:127.0.0.1:19533" in tls
    assert "socat" in generated.packages(site, site.machines["db1"])
    assert "OWNER=systemd-journal-remote" in (db1 / "usr/local/etc/croft/state/journal.conf").read_text()
    vacuum = (db1 / UNIT_DIR / f"{journal.VACUUM}.service").read_text()
    assert f"--vacuum-time={14 * 86400}s --vacuum-size=2G" in vacuum
    assert not (web1 / UNIT_DIR / f"{journal.REMOTE}.d").exists()
    # Each certificate is the CA's, for its machine's address, and its key is a secret.
    ca = journal.ca_dir(site) / "ca.crt"
    for machine, address in (("web1", "10.77.0.11"), ("db1", "10.77.0.13")):
        crt = root / machine / "root" / journal.TLS_DIR / "machine.crt"
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", ca, "-verify_ip", address, "-purpose", "sslserver", crt],
            capture_output=True, text=True,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr
        entry = results[machine].manifest.entries[f"{journal.TLS_DIR}/machine.key"]
        assert entry.secret and entry.mode == 0o600
    assert (journal.ca_dir(site) / "ca.key").stat().st_mode & 0o777 == 0o600
    # A machine that moves gets a certificate for its new address; the others keep theirs.
    db1_crt = (db1 / journal.TLS_DIR / "machine.crt").read_text()
    web1_toml = example_site / "machines/web1.toml"
    web1_toml.write_text(web1_toml.read_text().replace("10.77.0.11", "10.77.0.91"))
    site = load_site(example_site, use_cache=False)
    builder.build(site, site.select([]))
    moved = subprocess.run(
        ["openssl", "verify", "-CAfile", ca, "-verify_ip", "10.77.0.91", web1 / journal.TLS_DIR / "machine.crt"],  # noqa: E501
        capture_output=True, text=True,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert (db1 / journal.TLS_DIR / "machine.crt").read_text() == db1_crt
    assert journal.ca_dir(site).stat().st_mode & 0o777 == 0o700
    # The alerts' rules, compiled, with the webhook's URL from its file: a secret on db1 alone.
    compiled = json.loads((db1 / alerts.CONFIG).read_text())
    assert compiled["notify"]["phone"]["webhook"] == "https://ntfy.example.org/secret-topic"
    assert results["db1"].manifest.entries[alerts.CONFIG].secret
    ssh = next(rule for rule in compiled["rules"] if rule["name"] == "ssh")
    assert ssh["priority"] == 3 and ssh["notify"] == ["ops", "phone"] and ssh["after"] == 300
    assert "hello-web.service" in compiled["machines"]["web1"]["units"]
    assert compiled["smtp"] == {"host": "mail.lan", "port": 25, "sender": "croft@lab.home.arpa"}
    assert not (web1 / alerts.CONFIG).exists()
    service = (db1 / UNIT_DIR / alerts.UNIT).read_text()
    assert "DynamicUser=yes" in service and "PrivateUsers" not in service
    assert (db1 / alerts.TOOL).read_text().startswith("#!/usr/bin/python3\n")
    assert "systemd-journal-remote" in generated.packages(site, site.machines["web1"])
    assert "python3" in generated.packages(site, site.machines["db1"])


def test_with_the_overlay_the_collector_listens_on_it_alone(example_site: Path) -> None:
    append(
        example_site / "site.toml",
        '[logs]\ncollector = "db1"\n\n[network.overlay]\nsubnet = "10.99.0.0/24"\n',
    )
    site = load_site(example_site, use_cache=False)
    builder.build(site, site.select(["db1", "web1"]))
    root = example_site / ".croft/build"
    socket = (root / "db1/root" / UNIT_DIR / f"{journal.REMOTE_SOCKET}.d/croft.conf").read_text()
    assert "ListenStream=\nListenStream=10.99.0." in socket and "FreeBind=yes" in socket
    upload = (root / "web1/root" / UNIT_DIR / f"{journal.UPLOAD}.d/croft.conf").read_text()
    assert "--url=http://10.99.0." in upload and "After=croft-overlay.service" in upload
    assert not (root / "web1/root" / journal.TLS_DIR).exists()
