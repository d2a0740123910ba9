"""Workflow templates render per machine; mistakes name the file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from croft.errors import SiteError
from croft.site.load import load_site
from croft.workflows.template import render
from tests.images.conftest import SITE

CONTEXT = {
    "hardware": {"disks": ["/dev/vda"], "interfaces": [{"hostname": "lab1"}]},
    "metadata": {"ssh_keys": []},
}


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns(".croft"))
    return site


def test_the_install_template_renders_for_a_machine(site_dir: Path) -> None:
    site = load_site(site_dir)
    context = {**CONTEXT, "images": {"debian": {"raw.zst": {"url": "http://s/artifacts/x#sha256=x"}}}}
    workflow = render(site, site.machines["lab1"], "install", context)
    image = workflow.tasks[0].actions[1]
    assert image.action == "image-to-disk" and image.timeout == 600
    assert image.env == {"IMAGE_URL": "http://s/artifacts/x#sha256=x", "DEST_DISK": "/dev/vda"}


def test_a_missing_variable_names_the_line(site_dir: Path) -> None:
    site = load_site(site_dir)
    with pytest.raises(SiteError) as info:
        render(site, site.machines["lab1"], "install", CONTEXT)  # no images
    assert "workflows/install.yaml:16: 'images' is undefined (rendering for lab1)" in str(info.value)


def test_bad_yaml_and_unknown_fields_and_actions(site_dir: Path) -> None:
    site = load_site(site_dir)
    machine = site.machines["lab1"]
    (site_dir / "workflows" / "bad.yaml").write_text("name: bad\ntasks:\n  - name: [\n")
    with pytest.raises(SiteError, match=r"bad.yaml:4: invalid YAML"):
        render(site, machine, "bad", CONTEXT)
    (site_dir / "workflows" / "odd.yaml").write_text(
        "name: odd\ntasks:\n  - name: t\n    actions:\n      - name: a\n        action: wipe-disk\n"
        "        retries: 3\n      - name: b\n"
    )
    with pytest.raises(SiteError) as info:
        render(site, machine, "odd", CONTEXT)
    assert "tasks.0.actions.0.retries: Unexpected keyword argument" in str(info.value)
    with pytest.raises(SiteError, match="no workflow template 'nope'"):
        render(site, machine, "nope", CONTEXT)


def test_a_type_error_in_a_template_names_the_line(site_dir: Path) -> None:
    site = load_site(site_dir)
    (site_dir / "workflows" / "sum.yaml").write_text("name: sum\n# keys\ntasks: {{ [1] + (2, 3) }}\n")
    with pytest.raises(SiteError, match=r"sum.yaml:3: TypeError: can only concatenate list"):
        render(site, site.machines["lab1"], "sum", CONTEXT)
