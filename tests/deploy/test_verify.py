"""croft verify's comparison, from recorded output of verify.sh (no machine needed)."""

from __future__ import annotations

from croft.build.manifest import Entry, Manifest
from croft.deploy.verify import compare

SHA = "a" * 64
LIVE = "/usr/local/croft/live/root/"


def manifest() -> Manifest:
    return Manifest(
        "web1",
        entries={
            "usr/local": Entry("dir", 0o755),
            "usr/local/bin": Entry("dir", 0o755),
            "usr/local/bin/tool": Entry("file", 0o755, sha256=SHA),
            "usr/local/bin/alias": Entry("link", target="tool"),
        },
        wanted={"app.service": ("multi-user.target.wants",)},
    )


RECORDED = (
    "d 755 usr\n"
    "d 755 usr/local\n"
    "d 755 usr/local/bin\n"
    "l usr/local/bin/alias\ttool\n"
    f"f 755 {SHA} usr/local/bin/tool\n"
    f"L bin/tool\t{LIVE}usr/local/bin/tool\n"
    f"L bin/alias\t{LIVE}usr/local/bin/alias\n"
    "u app.service active success simple\n"
)


def test_a_live_tree_that_matches_has_no_drift() -> None:
    assert compare(manifest(), RECORDED) == []


def test_every_kind_of_drift_is_named() -> None:
    drifted = (
        RECORDED.replace(f"f 755 {SHA}", f"f 755 {'b' * 64}")
        .replace("l usr/local/bin/alias\ttool", "l usr/local/bin/alias\t/etc/passwd")
        .replace(f"L bin/tool\t{LIVE}usr/local/bin/tool\n", "")
        .replace("u app.service active success simple", "u app.service failed exit-code simple")
        + "f 644 "
        + SHA
        + " usr/local/bin/extra\n"
    )
    assert compare(manifest(), drifted) == [
        "changed: /usr/local/bin/alias (mode or target differs from the manifest)",
        "changed: /usr/local/bin/tool (content differs from the manifest)",
        "unmanaged: /usr/local/bin/extra is in the live generation but not in its manifest",
        "unlinked: /usr/local/bin/tool is not croft's link into the live generation",
        "unit: app.service is failed (exit-code)",
    ]


def test_a_missing_file_and_a_finished_oneshot() -> None:
    recorded = RECORDED.replace(f"f 755 {SHA} usr/local/bin/tool\n", "").replace(
        "active success simple", "inactive success oneshot"
    )
    assert compare(manifest(), recorded) == ["missing: /usr/local/bin/tool"]


def test_a_stopped_service_is_drift_even_when_it_ended_cleanly() -> None:
    stopped = RECORDED.replace("active success simple", "inactive success simple")
    assert compare(manifest(), stopped) == ["unit: app.service is inactive"]


def test_a_link_outside_usr_local_that_went_or_points_elsewhere() -> None:
    with_outside = Manifest(
        "web1",
        manifest().entries,
        manifest().wanted,
        outside={"etc/apt/apt.conf.d/50x": "usr/local/bin/tool"},
    )
    assert compare(with_outside, RECORDED + "X etc/apt/apt.conf.d/50x\t/usr/local/bin/tool\n") == []
    for recorded in (
        RECORDED + "X etc/apt/apt.conf.d/50x\t\n",
        RECORDED + "X etc/apt/apt.conf.d/50x\t/tmp/x\n",
    ):
        assert compare(with_outside, recorded) == [
            "unlinked: /etc/apt/apt.conf.d/50x is not croft's link to /usr/local/bin/tool"
        ]
