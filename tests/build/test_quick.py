from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from croft.build import builder, quick, sources, stamp
from croft.site.load import load_site
from croft.ui import show_build as build_command

WWW = "layers/web/usr/local/share/www"


def changes_after(site_dir: Path, edit: Path, text: str) -> stamp.Changes:
    edit.write_text(text)
    time.sleep(stamp.RACY_NS / 1e9)
    changes = stamp.changes(str(site_dir / ".croft"), "*")
    assert changes is not None
    return changes


def manifests(site_dir: Path) -> dict[str, str]:
    return {m: (site_dir / ".croft/build" / m / "manifest.json").read_text() for m in ("web1", "web2", "db1")}


def test_a_plain_edit_needs_neither_the_site_nor_the_builder(example_site: Path) -> None:
    build_command(str(example_site), ())
    about = example_site / "machines/web1/usr/local/share/www/about.html"
    changes = changes_after(example_site, about, "<p>quick</p>\n")
    assert quick.apply(str(example_site / ".croft"), changes) == {"web1": 1}
    built = example_site / ".croft/build/web1/root/usr/local/share/www/about.html"
    assert built.read_text() == "<p>quick</p>\n"
    quick_manifests = manifests(example_site)
    sources.forget_walks()
    site = load_site(example_site)
    builder.build(site, site.select([]), force=True, record_as="*")
    assert manifests(example_site) == quick_manifests


def test_the_command_reports_what_the_quick_path_wrote(
    example_site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_command(str(example_site), ())
    capsys.readouterr()
    (example_site / "layers/web/usr/local/etc/hello-web/httpd.conf").write_text("# edited\n")
    time.sleep(stamp.RACY_NS / 1e9)
    build_command(str(example_site), ())
    written = capsys.readouterr().out.splitlines()
    # The machines with the web layer, lab1 among them.
    assert written == [f"{name}: 1 written, 0 removed" for name in ("lab1", "web1", "web2")]
    build_command(str(example_site), ())
    assert capsys.readouterr().out == "up to date\n"


def test_a_template_edit_renders_with_the_context_its_machines_last_build_kept(example_site: Path) -> None:
    build_command(str(example_site), ())
    page = example_site / "layers/web/usr/local/share/www/index.html.j2"
    changes = changes_after(
        example_site, page, "<p>{{ greeting }} from {{ machine.name }} ({{ facts.nproc }})</p>\n"
    )
    assert quick.apply(str(example_site / ".croft"), changes) == {"lab1": 1, "web1": 1, "web2": 1}
    built = example_site / ".croft/build/web2/root/usr/local/share/www/index.html"
    assert built.read_text() == "<p>Hello from croft from web2 (2)</p>\n"
    # Exactly what the builder makes, keys included: a whole build finds every output current.
    quick_manifests = manifests(example_site)
    database = sqlite3.connect(example_site / ".croft/cache/build.db")
    keys = database.execute("SELECT machine, path, key, deps FROM outputs ORDER BY 1, 2").fetchall()
    sources.forget_walks()
    site = load_site(example_site)
    builder.build(site, site.select([]))
    assert database.execute("SELECT machine, path, key, deps FROM outputs ORDER BY 1, 2").fetchall() == keys
    builder.build(site, site.select([]), force=True, record_as="*")
    assert manifests(example_site) == quick_manifests


@pytest.mark.parametrize(
    "text",
    [
        "<p>{{ nosuch }}</p>\n",  # an error, which the builder reports with its line
        "<p>{{ greeting }</p>\n",  # a syntax error
        '{% include "usr/local/share/www/other.html.j2" %}\n',  # an include to index
    ],
)
def test_a_template_edit_the_quick_path_cannot_settle_writes_nothing(example_site: Path, text: str) -> None:
    build_command(str(example_site), ())
    page = example_site / "layers/web/usr/local/share/www/index.html.j2"
    built = example_site / ".croft/build/web2/root/usr/local/share/www/index.html"
    before = built.read_text()
    changes = changes_after(example_site, page, text)
    assert quick.apply(str(example_site / ".croft"), changes) is None
    assert built.read_text() == before


@pytest.mark.parametrize(
    "edit",
    [
        "layers/web/usr/local/lib/systemd/system/hello-web.service",  # a unit file
        "layers/web/layer.toml",  # what the site says
    ],
)
def test_anything_more_than_plain_content_takes_the_builder(example_site: Path, edit: str) -> None:
    build_command(str(example_site), ())
    path = example_site / edit
    changes = changes_after(example_site, path, path.read_text() + "\n# edited\n")
    assert quick.apply(str(example_site / ".croft"), changes) is None


def test_a_new_file_takes_the_builder(example_site: Path) -> None:
    build_command(str(example_site), ())
    changes = changes_after(example_site, example_site / WWW / "new.html", "<p>new</p>\n")
    assert changes.structural
    assert quick.apply(str(example_site / ".croft"), changes) is None
    os.unlink(example_site / WWW / "new.html")
