from __future__ import annotations

from pathlib import Path

import pytest

from croft.build import builder
from croft.errors import SiteError
from croft.site.load import load_site


def problems(site: Path) -> str:
    """Every problem loading the site at `site` reports, as one text."""
    with pytest.raises(SiteError) as info:
        load_site(site, use_cache=False)
    return str(info.value)


def test_example_services_load(example_site: Path) -> None:
    site = load_site(example_site)
    notes = site.layers["notes"].config.services["notes"]
    assert notes.socket is not None and notes.socket.target == 9000
    assert notes.unit_name("notes") == "notes.service"
    assert site.layers["proxy"].config.services["nginx"].config == {
        "/etc/nginx/nginx.conf": "usr/local/etc/nginx/nginx.conf"
    }


def test_malformed_declarations_name_file_line_and_fix(example_site: Path) -> None:
    (example_site / "layers/notes/services/notes.toml").write_text(
        'network = "private"\n'
        'state = ["var/lib/notes"]\n'
        "snapshots = { weekly = 4 }\n"
        "[socket]\n"
        'listen = ["eighty"]\n'
        "target = 9000\n"
        'idle_timeout = "soon"\n'
        "[limits]\n"
        'memory = "lots"\n'
    )
    (example_site / "layers/proxy/services/nginx.toml").write_text(
        'unit = "nginx"\nconfig = { "etc/nginx/nginx.conf" = "/etc/nginx.conf" }\nprofile = "paranoid"\n'
    )
    found = problems(example_site)
    notes = "layers/notes/services/notes.toml"
    assert f"{notes}:2: state.0: service 'notes': 'var/lib/notes' is not a directory" in found
    assert f"{notes}:3: snapshots.weekly: service 'notes': unknown snapshot period 'weekly'" in found
    assert f"{notes}:5: socket.listen.0: service 'notes': 'eighty' is not a port or ADDRESS:PORT" in found
    assert f"{notes}:7: socket.idle_timeout: service 'notes': 'soon' is not a time span" in found
    assert f"{notes}:9: limits.memory: service 'notes': 'lots' is not a size" in found
    # A value of the wrong kind is reported before the checks of meaning, with what is allowed.
    nginx = "layers/proxy/services/nginx.toml"
    assert f"{nginx}:3: profile: Input should be 'strict', 'default' or 'relaxed'" in found


def test_unknown_key_in_a_service_lists_the_allowed_ones(example_site: Path) -> None:
    nginx = example_site / "layers/proxy/services/nginx.toml"
    nginx.write_text('unit = "nginx.service"\nstate_dirs = []\n')
    found = problems(example_site)
    assert "nginx.toml:2: state_dirs: unknown key" in found
    assert "allowed keys here: unit, profile, config, state, writable" in found


def test_a_service_declared_twice_is_refused(example_site: Path) -> None:
    (example_site / "layers/notes/layer.toml").write_text('[services.notes]\nprofile = "strict"\n')
    assert "service 'notes' is also declared in layer.toml" in problems(example_site)


def test_a_malformed_vm_is_refused_with_each_reason(example_site: Path) -> None:
    (example_site / "layers/vms/services/hello-vm.toml").write_text(
        'state = ["/var/lib/vm"]\n[vm]\nimage = "/srv/vm.qcow2"\nmemory = "lots"\nports = ["80"]\n'
    )
    found = problems(example_site)
    vm = "layers/vms/services/hello-vm.toml"
    assert f"{vm}:1: state: service 'hello-vm': not for a VM: a VM starts afresh from its image" in found
    assert f"{vm}:3: vm.image: service 'hello-vm': '/srv/vm.qcow2' is not a file croft ships" in found
    assert f"{vm}:4: vm.memory: service 'hello-vm': 'lots' is not a size in M or G" in found
    assert f"{vm}:5: vm.ports.0: service 'hello-vm': '80' is not MACHINE_PORT:VM_PORT" in found


def test_a_vm_whose_image_is_not_built_names_the_command_that_builds_it(example_site: Path) -> None:
    machine = example_site / "machines/db1.toml"
    machine.write_text(machine.read_text().replace("layers = [", 'layers = ["vms", ', 1))
    site = load_site(example_site, use_cache=False)
    with pytest.raises(SiteError) as info:
        builder.build(site, site.select(["db1"]), write=False)
    found = str(info.value)
    assert "`!` link points nowhere" in found and "after `croft image build NAME`" in found
