from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from croft.build import builder, sources, stamp
from croft.build.manifest import Manifest
from croft.build.result import BuildResult
from croft.errors import SiteError
from croft.site.load import load_site


@pytest.fixture(autouse=True)
def fresh_walks() -> None:
    sources.forget_walks()


def build(site_dir: Path, *names: str) -> dict[str, BuildResult]:
    sources.forget_walks()
    site = load_site(site_dir)
    return builder.build(site, site.select(list(names)), record_as=stamp.selection_key(names))


WWW_TEMPLATE = "layers/web/usr/local/share/www/index.html.j2"


def nothing_changed(site_dir: Path) -> bool:
    changes = stamp.changes(str(site_dir / ".croft"), "*")
    return changes is not None and not changes


def out(site_dir: Path, machine: str, path: str) -> Path:
    return site_dir / ".croft" / "build" / machine / "root" / path


def test_layers_compose_and_templates_render(example_site: Path) -> None:
    results = build(example_site)
    index = out(example_site, "web1", "usr/local/share/www/index.html").read_text()
    assert "Hello from web1, the first web server" in index  # machine var beats site var
    assert "<title>web1.lab.home.arpa</title>" in index
    assert "Hello from croft" in out(example_site, "web2", "usr/local/share/www/index.html").read_text()
    assert out(example_site, "web1", "usr/local/share/www/about.html").exists()
    assert not out(example_site, "web2", "usr/local/share/www/about.html").exists()
    manifest = results["web1"].manifest
    assert manifest.wanted["hello-web.service"] == ("multi-user.target.wants",)
    wants = "usr/local/lib/systemd/system/multi-user.target.wants/hello-web.service"
    assert os.readlink(out(example_site, "web1", wants)) == "../hello-web.service"
    assert manifest.entries["usr/local/etc/hello-web/env"].units == ("hello-web.service",)
    on_disk = Manifest.load(example_site / ".croft" / "build" / "web1" / "manifest.json")
    assert on_disk.digest == manifest.digest


def test_later_layer_overrides_and_explain_says_so(example_site: Path) -> None:
    override = example_site / "machines" / "web1" / "usr" / "local" / "etc" / "hello-web" / "httpd.conf"
    override.parent.mkdir(parents=True)
    override.write_text("# web1's own\n")
    build(example_site)
    assert out(example_site, "web1", "usr/local/etc/hello-web/httpd.conf").read_text() == "# web1's own\n"
    site = load_site(example_site)
    comp = builder.composition(site, site.machines["web1"])
    assert comp.sources["usr/local/etc/hello-web/httpd.conf"].origin == "(machine)"
    assert [s.origin for s in comp.overridden["usr/local/etc/hello-web/httpd.conf"]] == ["web"]


def test_incremental_rebuild_touches_only_what_changed(example_site: Path) -> None:
    build(example_site)
    assert nothing_changed(example_site)
    untouched = out(example_site, "web1", "usr/local/etc/hello-web/env").stat().st_mtime_ns
    (example_site / "layers" / "web" / "usr" / "local" / "share" / "www" / "index.html.j2").write_text(
        "<p>{{ greeting }}!</p>\n"
    )
    assert stamp.changes(str(example_site / ".croft"), "*")
    results = build(example_site)
    assert results["web1"].written == 1 and results["web2"].written == 1 and results["db1"].written == 0
    assert out(example_site, "web1", "usr/local/etc/hello-web/env").stat().st_mtime_ns == untouched
    # A variable change re-renders only the templates that read it.
    machine = example_site / "machines" / "web2.toml"
    machine.write_text(machine.read_text() + "\n[vars]\nweb_port = 9090\n")
    results = build(example_site)
    assert results["web2"].written == 1 and results["web1"].written == 0
    assert out(example_site, "web2", "usr/local/etc/hello-web/env").read_text() == "PORT=9090\n"


def test_deleted_source_disappears_from_build(example_site: Path) -> None:
    build(example_site)
    (example_site / "machines" / "web1" / "usr" / "local" / "share" / "www" / "about.html").unlink()
    results = build(example_site)
    assert results["web1"].removed == 1
    assert not out(example_site, "web1", "usr/local/share/www/about.html").exists()


def test_undefined_variable_names_file_line_and_machine(example_site: Path) -> None:
    template = example_site / "layers" / "base" / "usr" / "local" / "etc" / "croft-example" / "motd.j2"
    template.write_text("hello\n{{ nosuch }}\n")
    with pytest.raises(SiteError) as info:
        build(example_site)
    text = str(info.value)
    assert "motd.j2:2: undefined variable 'nosuch' (machine db1)" in text
    assert "(machine web1)" in text  # every machine's problem, at once


def test_missing_facts_say_how_to_gather_them(tmp_path: Path) -> None:
    from tests.conftest import copy_example

    site = copy_example(tmp_path, facts=False)
    with pytest.raises(SiteError) as info:
        build(site, "db1")
    assert "no facts were gathered for db1" in str(info.value)
    assert "croft facts db1" in str(info.value)


def test_links_deref_modes_and_secrets(example_site: Path, tmp_path: Path) -> None:
    tree = example_site / "layers" / "base" / "usr" / "local"
    (tree / "bin").mkdir()
    script = tree / "bin" / "hello"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (tree / "bin" / "hi").symlink_to("hello")
    secret = tmp_path / "outside-git.key"
    secret.write_text("s3cret\n")
    (tree / "etc" / "croft-example" / "!api.key").symlink_to(secret)
    (example_site / "layers" / "base" / "layer.toml").write_text(
        'secrets = ["usr/local/etc/croft-example/*.key"]\n[vars]\nrole = "server"\n'
    )
    manifest = build(example_site, "db1")["db1"].manifest
    assert stat.S_IMODE(out(example_site, "db1", "usr/local/bin/hello").stat().st_mode) == 0o755
    assert os.readlink(out(example_site, "db1", "usr/local/bin/hi")) == "hello"
    key = out(example_site, "db1", "usr/local/etc/croft-example/api.key")
    assert key.read_text() == "s3cret\n" and not key.is_symlink()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert manifest.entries["usr/local/etc/croft-example/api.key"].secret
    secret.unlink()
    with pytest.raises(SiteError) as info:
        build(example_site, "db1")
    assert "!api.key: `!` link points nowhere" in str(info.value)


def manifest_text(site_dir: Path, machine: str) -> str:
    return (site_dir / ".croft" / "build" / machine / "manifest.json").read_text()


def full_rebuild(site_dir: Path) -> dict[str, str]:
    """Every machine's manifest as a forced build from nothing makes it."""
    sources.forget_walks()
    site = load_site(site_dir)
    builder.build(site, site.select([]), force=True, record_as="*")
    return {name: manifest_text(site_dir, name) for name in site.machines}


def test_edits_redo_only_their_outputs_and_agree_with_a_full_build(example_site: Path) -> None:
    build(example_site)
    www = example_site / "layers" / "web" / "usr" / "local" / "share" / "www"
    with open(www / "index.html.j2", "a") as stream:  # in place
        stream.write("<!-- edited -->\n")
    about = example_site / "machines" / "web1" / "usr" / "local" / "share" / "www" / "about.html"
    replacement = about.with_name(".about.html.swp")
    replacement.write_text("<p>saved by rename, as editors do</p>\n")
    os.replace(replacement, about)  # touches the directory, but its names stay the same
    changes = stamp.changes(str(example_site / ".croft"), "*")
    assert changes and not changes.structural
    results = build(example_site)
    assert (results["web1"].written, results["web2"].written, results["db1"].written) == (2, 1, 0)
    assert "saved by rename" in out(example_site, "web1", "usr/local/share/www/about.html").read_text()
    partial = {name: manifest_text(example_site, name) for name in ("web1", "web2", "db1", "lab1", "lab2")}
    assert partial == full_rebuild(example_site)


def test_a_new_file_in_a_known_directory_is_built(example_site: Path) -> None:
    build(example_site)
    www = example_site / "layers" / "web" / "usr" / "local" / "share" / "www"
    (www / "new.html").write_text("<p>new</p>\n")
    time.sleep(stamp.RACY_NS / 1e9)  # else the next check looks at the new file again
    assert stamp.changes(str(example_site / ".croft"), "*").structural  # type: ignore[union-attr]
    build(example_site)
    assert out(example_site, "web2", "usr/local/share/www/new.html").read_text() == "<p>new</p>\n"
    assert nothing_changed(example_site)


def test_editing_an_included_template_rerenders_its_includer(example_site: Path) -> None:
    etc = example_site / "layers" / "base" / "usr" / "local" / "etc" / "croft-example"
    (etc / "part.j2").write_text("part one\n")
    (etc / "whole.j2").write_text('{% include "usr/local/etc/croft-example/part.j2" %}and the rest\n')
    whole = out(example_site, "db1", "usr/local/etc/croft-example/whole")
    build(example_site)
    assert whole.read_text() == "part one\nand the rest\n"
    (etc / "part.j2").write_text("part two\n")
    build(example_site)
    assert whole.read_text() == "part two\nand the rest\n"


def test_manifest_assembled_from_the_state_equals_the_manifest_object(example_site: Path) -> None:
    results = build(example_site)
    for name, result in results.items():
        text = manifest_text(example_site, name)
        assert text == result.manifest.to_json()
        assert Manifest.from_json(text).digest == result.manifest.digest
        assert Manifest.from_json(text, trusted=True).digest == result.manifest.digest


def test_built_files_carry_times_derived_from_their_content(example_site: Path) -> None:
    build(example_site)
    about = example_site / "machines/web1/usr/local/share/www/about.html"
    built = out(example_site, "web1", "usr/local/share/www/about.html")
    times = set()
    for text in ("<p>saved 1</p>\n", "<p>saved 2</p>\n", "<p>saved 1</p>\n"):
        about.write_text(text)  # equal sizes, within one clock tick
        build(example_site)
        assert built.read_text() == text
        times.add(built.stat().st_mtime_ns)
    assert len(times) == 2  # one per content, the same again for the same content


def test_an_edit_in_the_same_clock_tick_as_the_build_is_not_missed(example_site: Path) -> None:
    sources.forget_walks()
    site = load_site(example_site)
    about = example_site / "machines/web1/usr/local/share/www/about.html"
    about.write_text("<p>first</p>\n")
    # Stamped a little ahead, so that however slowly the build gets to its stats, they are
    # taken within a clock tick of the write (racy).
    soon = time.time_ns() + 10**9
    os.utime(about, ns=(soon, soon))
    builder.build(site, site.select([]), record_as="*")
    about.write_text("<p>other</p>\n")  # the same size ...
    os.utime(about, ns=(soon, soon))  # ... within the same clock tick: the same stat
    build(example_site)
    assert out(example_site, "web1", "usr/local/share/www/about.html").read_text() == "<p>other</p>\n"


def test_machines_build_in_parallel_as_they_would_one_by_one(
    example_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in (4, 5, 6):
        (example_site / "machines" / f"web{index}.toml").write_text(
            f'address = "10.77.0.{20 + index}"\nlayers = ["base", "web"]\n'
        )
        facts = (example_site / "facts/web1.json").read_text()
        (example_site / "facts" / f"web{index}.json").write_text(facts)
    assert len(load_site(example_site).machines) >= builder.PARALLEL_FROM
    build(example_site)  # forked workers, one per core
    parallel = {name: manifest_text(example_site, name) for name in ("web1", "web4", "db1")}
    monkeypatch.setattr(builder, "PARALLEL_FROM", 100)
    assert {name: m for name, m in full_rebuild(example_site).items() if name in parallel} == parallel
    # Problems found in the workers are all reported.
    (example_site / WWW_TEMPLATE).write_text("{{ nosuch }}\n")
    monkeypatch.setattr(builder, "PARALLEL_FROM", 2)
    with pytest.raises(SiteError) as info:
        builder.build(load_site(example_site), load_site(example_site).select([]), force=True, record_as="*")
    for name in ("web1", "web2", "web4", "web5", "web6"):
        assert f"(machine {name})" in str(info.value)
