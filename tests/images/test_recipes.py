"""Bad recipes fail with a clear error and publish nothing; a good build is not rebuilt."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from croft.errors import CroftError, SiteError
from croft.images.build import build
from croft.images.store import store_for
from croft.run import CommandError
from croft.site.load import load_site
from tests.images.conftest import SITE

pytestmark = pytest.mark.images


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("recipes") / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns(".croft"))
    return site


def objects(site: Path) -> set[str]:
    store = site / ".croft" / "images" / "store"
    return {path.name for path in store.iterdir()} if store.is_dir() else set()


def test_an_unknown_package_in_a_base_is_named_and_nothing_is_published(site_dir: Path) -> None:
    (site_dir / "images" / "broken.toml").write_text('kind = "base"\npackages = ["croft-no-such-package"]\n')
    before = objects(site_dir)
    with pytest.raises(CroftError, match=r"packages not found in bookworm \(.*\): croft-no-such-package"):
        build(load_site(site_dir), "broken")
    assert not (site_dir / ".croft" / "images" / "broken.json").exists()
    assert objects(site_dir) == before
    assert not (site_dir / ".croft" / "images" / "work" / "broken").exists()
    (site_dir / "images" / "broken.toml").unlink()


def test_an_unknown_kernel_is_named_with_its_suite_and_architecture(site_dir: Path) -> None:
    (site_dir / "images" / "broken.toml").write_text(
        'kind = "initrd"\narch = "arm64"\nkernel = "linux-image-croft-no-such"\n'
    )
    before = objects(site_dir)
    with pytest.raises(CroftError, match=r"'linux-image-croft-no-such' is not in Debian bookworm for arm64"):
        build(load_site(site_dir), "broken")
    assert not (site_dir / ".croft" / "images" / "broken.json").exists()
    assert objects(site_dir) == before
    (site_dir / "images" / "broken.toml").unlink()


def test_a_good_overlay_is_built_once_then_a_failing_change_keeps_it_published(site_dir: Path) -> None:
    site = load_site(site_dir)
    first = build(site, "hello")
    lines: list[str] = []
    assert build(site, "hello", progress=lines.append) == first
    assert lines == ["netboot: up to date", "hello: up to date"]

    recipe = site_dir / "images" / "hello.toml"
    recipe.write_text(recipe.read_text().replace('["busybox"]', '["busybox", "croft-no-such-package"]'))
    with pytest.raises(CroftError, match="packages not found: croft-no-such-package"):
        build(load_site(site_dir), "hello")
    recipe.write_text(recipe.read_text() + 'commands = ["false"]\n')
    recipe.write_text(recipe.read_text().replace(', "croft-no-such-package"', ""))
    with pytest.raises(CommandError, match="false"):
        build(load_site(site_dir), "hello")
    assert store_for(site).manifest("hello") == first
    mounts = Path("/proc/self/mounts").read_text()
    assert str(site_dir) not in mounts  # the failed builds left nothing mounted


def test_a_missing_file_in_the_tree_stops_the_build_before_it_starts(site_dir: Path) -> None:
    os.symlink("/nonexistent/key", site_dir / "images" / "hello" / "etc" / "!key")
    try:
        with pytest.raises(SiteError, match=r"!key: `!` link points nowhere"):
            build(load_site(site_dir), "hello")
    finally:
        (site_dir / "images" / "hello" / "etc" / "!key").unlink()
