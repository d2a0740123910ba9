"""Image recipes are checked with the rest of the site: every problem at once, with its line."""

from __future__ import annotations

import os
from pathlib import Path

from croft.images.build import check_trees
from croft.site.load import load_site
from tests.site.test_services import problems


def test_example_images_load(example_site: Path) -> None:
    site = load_site(example_site)
    assert {name: image.config.kind for name, image in site.images.items()} == {
        "agent": "overlay",
        "cloud": "disk",
        "debian": "disk",
        "initrd": "initrd",
        "netboot": "base",
    }
    assert site.images["agent"].config.agent
    assert site.images["debian"].config.size == "2G"
    assert site.images["cloud"].config.outputs == ("qcow2",)


def test_malformed_toml_names_the_line(example_site: Path) -> None:
    (example_site / "images" / "broken.toml").write_text('kind = "base"\npackages = [curl]\n')
    assert "images/broken.toml:2: invalid TOML: Invalid value" in problems(example_site)


def test_recipe_problems_name_file_line_field_and_fix(example_site: Path) -> None:
    images = example_site / "images"
    (images / "helper.toml").write_text('kind = "overlay"\nbase = "initrd"\npackages = ["Bad_Name"]\n')
    (images / "boot.toml").write_text('kind = "initrd"\npackages = ["curl"]\nmodules = ["nvme", "no/such"]\n')
    (images / "disk.toml").write_text('kind = "disk"\nsize = "100M"\noutputs = []\nmirror = "ftp://x"\n')
    (images / "odd.toml").write_text('kind = "iso"\nsuite = "bookworm"\n')
    found = problems(example_site)
    assert "images/helper.toml:2: base: no base image 'initrd'\n    hint: name one of: netboot" in found
    assert "images/helper.toml:3: packages.0: 'Bad_Name' is not a Debian package name" in found
    assert "images/boot.toml:2: packages: does not apply to an initrd image" in found
    assert "hint: an initrd image reads: arch, compression, kernel, mirror, modules, suite" in found
    assert "images/boot.toml:3: modules.1: 'no/such' is not a kernel module name" in found
    assert "images/disk.toml:2: size: 100M is too small for a disk image" in found
    assert "images/disk.toml:3: outputs: names no output" in found
    assert "images/disk.toml:4: mirror: 'ftp://x' is not an http(s) URL" in found
    assert "images/odd.toml:1: kind: Input should be 'base', 'overlay', 'initrd' or 'disk'" in found


def test_an_overlay_needs_its_base(example_site: Path) -> None:
    (example_site / "images" / "helper.toml").write_text('kind = "overlay"\n')
    assert "images/helper.toml: base: an overlay needs the base image it goes on" in problems(example_site)


def test_a_dangling_link_or_a_template_in_an_image_tree_is_reported(example_site: Path) -> None:
    tree = example_site / "images" / "debian" / "etc"
    tree.mkdir(parents=True, exist_ok=True)
    os.symlink("/nonexistent/secret", tree / "!secret")
    (tree / "motd.j2").write_text("{{ machine.name }}\n")
    found = "\n".join(map(str, check_trees(load_site(example_site).images)))
    assert "images/debian/etc/!secret: `!` link points nowhere (/nonexistent/secret does not exist)" in found
    assert "images/debian/etc/motd.j2: templates are not rendered in image trees" in found
