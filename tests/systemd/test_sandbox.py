from __future__ import annotations

from pathlib import Path

from croft.build import builder, sources
from croft.commands import _explain
from croft.site.load import load_site
from croft.site.model import ContainerConfig, ServiceConfig, SocketConfig, VmConfig
from croft.systemd import hardening, sandbox

UNITS = "usr/local/lib/systemd/system"


def test_drop_in_binds_config_and_state_and_confines() -> None:
    service = ServiceConfig(
        unit="nginx.service",
        config={"/etc/nginx/nginx.conf": "usr/local/etc/nginx/nginx.conf"},
        state=("/var/lib/nginx",),
        writable=("/var/log/nginx",),
        devices=("/dev/dri/renderD128",),
    )
    text = sandbox.drop_in("nginx", service)
    assert "BindReadOnlyPaths=/usr/local/etc/nginx/nginx.conf:/etc/nginx/nginx.conf" in text
    assert "BindPaths=/var/lib/croft/state/nginx/current/var/lib/nginx:/var/lib/nginx" in text
    assert "ReadWritePaths=/var/lib/nginx /var/log/nginx" in text
    assert "DeviceAllow=/dev/dri/renderD128 rw" in text and "PrivateDevices" not in text
    assert "Requires=croft-state@nginx.service" in text
    assert "SyslogIdentifier=nginx" in text
    assert "ProtectSystem=strict" in text


def test_every_profile_keeps_the_root_read_only() -> None:
    for profile in hardening.PROFILES:
        assert ("ProtectSystem", "strict") in hardening.directives(profile)
    assert ("DynamicUser", "yes") in hardening.directives("strict")
    assert not any(key == "SystemCallFilter" for key, _ in hardening.directives("relaxed"))


def test_socket_service_is_started_by_its_proxy_only() -> None:
    service = ServiceConfig(network="private", socket=SocketConfig(listen=("8090",), target=9000))
    files = sandbox.generate({"notes": service}, shipped={"notes.service"})
    proxy = files[f"{UNITS}/croft-proxy-notes.service"].content
    assert "JoinsNamespaceOf=notes.service" in proxy and "PrivateNetwork=yes" in proxy
    assert "--exit-idle-time=5min 127.0.0.1:9000" in proxy
    assert "ListenStream=8090" in files[f"{UNITS}/croft-proxy-notes.socket"].content
    assert "StopWhenUnneeded=yes" in files[f"{UNITS}/notes.service.d/croft-sandbox.conf"].content
    assert not any(".wants/notes.service" in path for path in files)


def test_a_distro_unit_is_started_by_a_link_croft_ships() -> None:
    files = sandbox.generate({"nginx": ServiceConfig(unit="nginx.service")}, shipped=set())
    link = files[f"{UNITS}/multi-user.target.wants/nginx.service"]
    assert link.link and link.content == "/lib/systemd/system/nginx.service"


def test_generated_files_join_the_tree_after_their_layer(example_site: Path) -> None:
    sources.forget_walks()
    site = load_site(example_site, use_cache=False)
    results = builder.build(site, site.select(["db1"]), record_as="db1")
    manifest = results["db1"].manifest
    drop_in = f"{UNITS}/nginx.service.d/croft-sandbox.conf"
    assert manifest.entries[drop_in].origin == "proxy (generated)"
    assert manifest.entries[drop_in].units == ("nginx.service",)
    # The config overlay belongs to the unit: a change to it restarts nginx.
    assert manifest.entries["usr/local/etc/nginx/nginx.conf"].units == ("nginx.service",)
    assert manifest.wanted["nginx.service"] == ("multi-user.target.wants",)
    assert "proxy (generated)" in _explain(site, "db1", f"/{drop_in}")


def test_the_build_generates_and_removing_a_service_removes_what_was_generated(example_site: Path) -> None:
    site = load_site(example_site, use_cache=False)
    generated = example_site / ".croft/generated/notes"
    assert not (example_site / ".croft/generated").exists()  # loading a site writes nothing
    builder.build(site, site.select([]), write=False)  # even `croft check` composes them
    assert (generated / UNITS / "croft-proxy-notes.socket").exists()
    (example_site / "layers/notes/services/notes.toml").unlink()
    site = load_site(example_site)
    builder.build(site, site.select([]), write=False)
    assert not generated.exists()


def test_a_container_is_a_unit_croft_writes() -> None:
    service = ServiceConfig(
        container=ContainerConfig(rootfs="usr/local/share/croft/rootfs/box", command=("/bin/box", "--serve")),
        state=("/var/lib/box",),
    )
    files = sandbox.generate({"box": service}, shipped=set())
    unit = files[f"{UNITS}/box.service"].content
    prepare = (
        "ExecStartPre=/usr/local/lib/croft/croft-container prepare box /usr/local/share/croft/rootfs/box"
    )
    assert prepare in unit
    assert "--bind=/var/lib/croft/state/box/current/var/lib/box:/var/lib/box" in unit
    assert "-D /var/lib/croft/containers/box --as-pid2 /bin/box --serve" in unit
    assert "Delegate=yes" in unit and "WantedBy=multi-user.target" in unit
    assert "ProtectSystem" not in files[f"{UNITS}/box.service.d/croft-sandbox.conf"].content
    assert f"{UNITS}/multi-user.target.wants/box.service" not in files


def test_a_strict_service_with_state_gets_a_user_of_its_own_that_owns_it() -> None:
    service = ServiceConfig(profile="strict", state=("/var/lib/notes",))
    files = sandbox.generate({"notes": service}, shipped={"notes.service"})
    drop_in = files[f"{UNITS}/notes.service.d/croft-sandbox.conf"].content
    # DynamicUser= takes the static user when it exists: a UID that stays, for state that stays.
    assert "DynamicUser=yes" in drop_in and "User=croft-notes" in drop_in
    assert files["usr/local/lib/sysusers.d/croft-notes.conf"].content.endswith(
        'u croft-notes - "notes (croft)"\n'
    )
    assert "OWNER=croft-notes" in files["usr/local/etc/croft/state/notes.conf"].content
    # Without state, or with a profile that keeps the unit's own user, nothing of the kind.
    for name, other in {
        "web": ServiceConfig(profile="strict"),
        "nginx": ServiceConfig(profile="default", state=("/var/lib/nginx",)),
    }.items():
        generated = sandbox.generate({name: other}, shipped=set())
        assert "\nUser=" not in generated[f"{UNITS}/{name}.service.d/croft-sandbox.conf"].content
        assert not any("sysusers.d" in path for path in generated)


def test_a_vm_is_a_unit_with_its_image_its_seed_and_its_ports() -> None:
    service = ServiceConfig(
        vm=VmConfig(
            image="usr/local/share/croft/vm/app.qcow2",
            memory="1G",
            cpus=2,
            ports=("8300:80",),
            user_data="#cloud-config\nhostname: app\n",
            accelerators=("tcg",),
        )
    )
    files = sandbox.generate({"app": service}, shipped=set())
    unit = files[f"{UNITS}/app.service"].content
    assert "-accel tcg -m 1G -smp 2" in unit
    assert "file=/usr/local/share/croft/vm/app.qcow2,if=virtio,format=qcow2,snapshot=on" in unit
    assert "file.driver=vvfat,file.dir=/run/croft-vm-app/seed,file.label=cidata" in unit
    assert "user,id=net0,hostfwd=tcp::8300-:80" in unit and "WantedBy=multi-user.target" in unit
    assert files["usr/local/lib/croft/vm/app/seed/user-data"].content == "#cloud-config\nhostname: app\n"
    assert '"local-hostname": "app"' in files["usr/local/lib/croft/vm/app/seed/meta-data"].content
    # QEMU generates code: the relaxed profile, with /dev/kvm its only device.
    drop_in = files[f"{UNITS}/app.service.d/croft-sandbox.conf"].content
    assert "MemoryDenyWriteExecute" not in drop_in and "ProtectSystem=strict" in drop_in
    assert "DevicePolicy=closed" in drop_in and "DeviceAllow=/dev/kvm rw" in drop_in
