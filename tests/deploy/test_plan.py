from __future__ import annotations

from croft.build.manifest import Entry, Manifest, unit_of
from croft.deploy import plan

UNIT = "usr/local/lib/systemd/system/web.service"
CONF = "usr/local/etc/web.conf"


def manifest(**files: str) -> Manifest:
    entries = {}
    for name, digest in files.items():
        path = {"unit": UNIT, "conf": CONF, "other": "usr/local/share/x"}[name]
        units = ("web.service",) if name in ("unit", "conf") else ()
        entries[path] = Entry("file", 0o644, digest, units=units)
    wanted: dict[str, tuple[str, ...]] = (
        {"web.service": ("multi-user.target.wants",)} if "unit" in files else {}
    )
    return Manifest("m", entries, wanted)


def test_unit_of() -> None:
    assert unit_of(UNIT) == "web.service"
    assert unit_of("usr/local/lib/systemd/system/nginx.service.d/croft.conf") == "nginx.service"
    assert unit_of(CONF) is None


def test_new_unit_starts_and_is_checked() -> None:
    steps = plan.steps(Manifest("m"), manifest(unit="a", conf="b"), "1")
    assert steps == [
        "links usr/local/etc\tweb.conf",
        "links usr/local/lib/systemd/system\tweb.service",
        "flip 1",
        "daemon-reload",
        "start web.service",
        "check web.service",
    ]


def test_config_change_reloads_or_restarts_only_its_unit() -> None:
    steps = plan.steps(manifest(unit="a", conf="b", other="c"), manifest(unit="a", conf="B", other="C"), "2")
    assert steps == ["flip 2", "reload-or-restart web.service", "check web.service"]


def test_unit_file_change_restarts_after_daemon_reload() -> None:
    steps = plan.steps(manifest(unit="a", conf="b"), manifest(unit="A", conf="b"), "2")
    assert steps == ["flip 2", "daemon-reload", "restart web.service", "check web.service"]


def test_removed_unit_stops_before_its_files_go() -> None:
    steps = plan.steps(manifest(unit="a", conf="b"), manifest(), "3")
    assert steps[0] == "stop web.service"
    assert steps.index("flip 3") < steps.index(f"unlink {UNIT}")
    assert "daemon-reload" in steps


def test_nothing_changed_is_just_a_flip() -> None:
    assert plan.steps(manifest(unit="a"), manifest(unit="a"), "4") == ["flip 4"]


def test_manifests_read_from_json_plan_as_the_ones_made() -> None:
    """A deploy reads both manifests from JSON and compares what it read, entry by entry: only
    what lands on the target counts (a file that moved to another layer, its mode as written)."""
    before = Manifest(
        "m",
        {
            CONF: Entry("file", 0o644, "b", origin="layers/a", units=("web.service",)),
            "usr/local/share/moved": Entry("file", 0o644, "m", origin="layers/a"),
            "usr/local/share/x": Entry("file", 0o644, "x"),
            "usr/local/share/gone": Entry("file", 0o644, "g"),
            "usr/local/bin/tool": Entry("file", 0o755, "t"),
        },
    )
    after = Manifest(
        "m",
        {
            CONF: Entry("file", 0o644, "B", origin="layers/a", units=("web.service",)),
            "usr/local/share/moved": Entry("file", 0o644, "m", origin="layers/b"),
            "usr/local/share/x": Entry("file", 0o644, "x"),
            "usr/local/share/new": Entry("link", target="x"),
            "usr/local/bin/tool": Entry("file", 0o700, "t"),
        },
    )
    read_before, read_after = (Manifest.from_json(m.to_json()) for m in (before, after))
    assert read_after == after
    for changes in (plan.file_changes(read_before, read_after), plan.file_changes(before, after)):
        assert (changes.added, changes.changed, changes.removed) == (
            ["usr/local/share/new"],
            ["usr/local/bin/tool", CONF],
            ["usr/local/share/gone"],
        )
    assert plan.steps(read_before, read_after, "5") == plan.steps(before, after, "5")


def test_new_paths_are_linked_one_directory_at_a_time() -> None:
    files = {f"usr/local/share/www/{name}": Entry("file", 0o644, name) for name in ("a", "b", "c d")}
    dirs = {"usr/local/share/www": Entry("dir", 0o755), "usr/local/share/www/img": Entry("dir", 0o750)}
    steps = plan.steps(Manifest("m"), Manifest("m", {**files, **dirs}), "1")
    assert steps == [
        "dirs 0750\tusr/local/share/www/img",
        "dirs 0755\tusr/local/share/www",
        "links usr/local/share/www\ta\tb\tc d",
        "flip 1",
    ]


def test_templates_are_never_started_or_restarted() -> None:
    template = "usr/local/lib/systemd/system/croft-state@.service"
    new = Manifest("m", {template: Entry("file", 0o644, "a", units=("croft-state@.service",))})
    assert plan.steps(Manifest("m"), new, "1") == [
        "links usr/local/lib/systemd/system\tcroft-state@.service",
        "flip 1",
        "daemon-reload",
    ]


def test_system_users_are_made_before_units_start() -> None:
    users = "usr/local/lib/sysusers.d/croft-web.conf"
    web = manifest(unit="a")
    new = Manifest("m", {**web.entries, users: Entry("file", 0o644, "u")}, web.wanted)
    steps = plan.steps(Manifest("m"), new, "1")
    assert steps.index("flip 1") < steps.index("sysusers") < steps.index("start web.service")
    assert "sysusers" not in plan.steps(new, new, "2")


def test_packages_install_before_anything_and_leave_after_the_files() -> None:
    old = Manifest("m", manifest(other="a").entries, packages=("curl", "old-tool"))
    new = Manifest(
        "m", manifest(unit="a", conf="b").entries, manifest(unit="a").wanted, ("curl", "nginx-light")
    )
    steps = plan.steps(old, new, "2")
    assert steps[0] == "install nginx-light"
    assert steps.index("remove old-tool") > steps.index("unlink usr/local/share/x")
    assert steps.index("remove old-tool") < steps.index("start web.service")
    # The way back undoes both.
    back = plan.steps(new, old, "1")
    assert back[0] == "install old-tool" and "remove nginx-light" in back
    # The same set: no apt at all.
    same = Manifest("m", manifest(other="b").entries, packages=("curl", "old-tool"))
    assert not any(step.startswith(("install", "remove")) for step in plan.steps(old, same, "3"))


def test_the_package_set_is_part_of_the_digest_only_when_there_is_one() -> None:
    bare = manifest(other="a")
    assert Manifest("m", bare.entries, packages=()).digest == bare.digest
    with_one = Manifest("m", bare.entries, packages=("hello",))
    assert with_one.digest != bare.digest
    assert Manifest.from_json(with_one.to_json()).packages == ("hello",)


def test_links_outside_usr_local_follow_the_flip_and_go_before_the_files() -> None:
    conf = "usr/local/etc/apt/apt.conf.d/50croft-proxy"
    old = Manifest("m", manifest(other="a").entries, outside={"etc/apt/apt.conf.d/old": "usr/local/share/x"})
    new = Manifest("m", {conf: Entry("file", 0o644, "c")}, outside={"etc/apt/apt.conf.d/50croft-proxy": conf})
    steps = plan.steps(old, new, "2")
    flip = steps.index("flip 2")
    assert steps[flip + 1] == "extunlink etc/apt/apt.conf.d/old\tusr/local/share/x"
    assert steps[flip + 2] == f"extlink etc/apt/apt.conf.d/50croft-proxy\t{conf}"
    assert steps.index("unlink usr/local/share/x") > flip + 2
    assert (
        Manifest.from_json(new.to_json()).outside == new.outside
        and new.digest != Manifest("m", new.entries).digest
    )


def test_a_distro_unit_croft_stops_configuring_lets_go_of_croft_settings() -> None:
    # systemd-resolved asked the site's DNS server through croft's drop-in; the new tree (or
    # croft reset) has none: resolved is restarted without it, not left running with it.
    drop_in = "usr/local/lib/systemd/resolved.conf.d/croft.conf"
    old = Manifest("m", {drop_in: Entry("file", 0o644, "a", units=("systemd-resolved.service",))})
    actions = plan.unit_actions(old, Manifest("m"), plan.file_changes(old, Manifest("m")))
    assert actions.try_reload_or_restart == ["systemd-resolved.service"]
    # croft's own unit, gone with its files, is not restarted (it was stopped).
    gone = plan.unit_actions(
        manifest(unit="a", conf="b"),
        Manifest("m"),
        plan.file_changes(manifest(unit="a", conf="b"), Manifest("m")),
    )
    assert gone.stop == ["web.service"] and not gone.try_reload_or_restart and not gone.try_restart
