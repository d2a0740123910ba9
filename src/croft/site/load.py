"""Loading a site from its directory: parse every file, validate, report every problem at once.

Validated sites are cached in .croft/cache/site.pickle, keyed by the config files' stat, so
the commands run after every edit do not pay for importing pydantic.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path
from typing import Any, TypeVar

from croft.errors import Problem, SiteError
from croft.site.fingerprint import config_files, fingerprint
from croft.site.hardware import check_hardware, check_serve
from croft.site.images import check_images
from croft.site.model import (
    OWNED_ROOT,
    Alert,
    AlertConfig,
    Image,
    ImageConfig,
    Layer,
    LayerConfig,
    Machine,
    MachineConfig,
    ServiceConfig,
    Site,
    SiteConfig,
    SitePackage,
    SitePackageConfig,
    VpnPeer,
    VpnPeerConfig,
)
from croft.site.packages import check_config, check_names, check_site_packages
from croft.site.services import check_services
from croft.site.tomlfile import Reporter, locate, read_toml

T = TypeVar("T")

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# What a layer (or a machine's own tree) may hold at its top: the file tree under usr/, and
# croft's own declarations.
LAYER_RESERVED = {"layer.toml", "services"}
CACHE_VERSION = 9


def load_site(root: Path, *, use_cache: bool = True) -> Site:
    """Load and validate the site at `root`; raises SiteError listing every problem."""
    root = root.resolve()
    if not (root / "site.toml").is_file():
        raise SiteError(
            [
                Problem(
                    root / "site.toml",
                    "not found",
                    hint="run croft in a site directory, or pass --site DIR",
                )
            ]
        )
    cache = root / ".croft" / "cache" / "site.pickle"
    stamps = fingerprint(config_files(root))
    if use_cache:
        try:
            with cache.open("rb") as stream:
                version, cached_stamps, site = pickle.load(stream)
            if version == CACHE_VERSION and cached_stamps == stamps:
                return site  # type: ignore[no-any-return]
        except (OSError, EOFError, pickle.PickleError, ValueError, TypeError, AttributeError):
            pass
    site = _load(root)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with tmp.open("wb") as stream:
        pickle.dump((CACHE_VERSION, stamps, site), stream)
    tmp.replace(cache)
    return site


def _validate(model: type[T], path: Path, problems: list[Problem]) -> T | None:
    """Parse and validate one TOML file into `model`; problems are appended, not raised."""
    from pydantic import TypeAdapter, ValidationError

    parsed = read_toml(path)
    if isinstance(parsed, Problem):
        problems.append(parsed)
        return None
    data, text = parsed
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc: tuple[str | int, ...] = tuple(error["loc"])
            field = ".".join(str(part) for part in loc) or None
            message = error["msg"]
            if error["type"] == "unexpected_keyword_argument":
                message = "unknown key"
                allowed = _allowed_keys(model, loc[:-1])
                hint = f"allowed keys here: {', '.join(allowed)}" if allowed else None
            elif error["type"] == "missing_argument" or error["type"] == "missing":
                message = "required key is missing"
                hint = f"add `{loc[-1]} = ...`"
            else:
                hint = None
            problems.append(Problem(path, message, line=locate(text, loc), field=field, hint=hint))
        return None


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys a (nested) dataclass accepts at `loc`, for 'unknown key' hints."""
    import dataclasses
    import typing

    current = model
    for part in loc:
        if isinstance(part, int) or not dataclasses.is_dataclass(current):
            return []
        hints = typing.get_type_hints(current)
        if part not in hints:
            return []
        current = hints[part]
        args = typing.get_args(current)
        if typing.get_origin(current) is dict and len(args) == 2:
            return []  # a free-form table (vars, units): any key
    if not dataclasses.is_dataclass(current):
        return []
    return [f.name for f in dataclasses.fields(current)]


def _is_address(address: str) -> bool:
    """An IP address, or a host name SSH can resolve (RFC 1123 labels)."""
    import ipaddress

    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        labels = address.removesuffix(".").split(".")
        return len(address) <= 253 and all(_LABEL.match(label) for label in labels)


def owned_path_problem(pattern: str) -> str | None:
    """Why a path or glob from a config file cannot name a file croft owns, if it cannot."""
    if pattern.startswith("/"):
        return "must be relative to the target's root, e.g. usr/local/etc/app.conf"
    parts = pattern.split("/")
    if ".." in parts:
        return "must not contain '..' (it would escape the target's root)"
    if parts[:2] != OWNED_ROOT.split("/"):
        return f"must be under {OWNED_ROOT}/: croft owns nothing else on a machine"
    return None


def _load(root: Path) -> Site:
    problems: list[Problem] = []
    config = _validate(SiteConfig, root / "site.toml", problems)

    layers: dict[str, Layer] = {}
    layers_dir = root / "layers"
    if layers_dir.is_dir():
        for path in sorted(layers_dir.iterdir()):
            if not path.is_dir():
                continue
            layer_config: LayerConfig | None = LayerConfig()
            if (path / "layer.toml").exists():
                layer_config = _validate(LayerConfig, path / "layer.toml", problems)
            if layer_config is not None:
                layer_config = _with_service_files(path, layer_config, problems)
                _check_layer(path, layer_config, problems)
                check_names(path / "layer.toml", layer_config.packages, problems)
                check_services(path, layer_config.services, problems)
                layers[path.name] = Layer(path.name, path, layer_config)
            _check_tree_top(path, problems)

    machines: dict[str, Machine] = {}
    machines_dir = root / "machines"
    addresses: dict[str, Path] = {}
    lowered: dict[str, Path] = {}
    if machines_dir.is_dir():
        for path in sorted(machines_dir.iterdir()):
            if path.is_dir():
                if not path.with_suffix(".toml").exists():
                    problems.append(
                        Problem(
                            path,
                            "a machine tree without a machine",
                            hint=f"create {path.name}.toml beside it, or remove it",
                        )
                    )
                else:
                    _check_tree_top(path, problems)
                continue
            if path.suffix != ".toml":
                continue
            name = path.stem
            if not _NAME.match(name):
                problems.append(
                    Problem(
                        path,
                        f"machine name {name!r} is not a valid host name",
                        hint="use lower-case letters, digits and '-', e.g. web-1.toml",
                    )
                )
                continue
            if name.lower() in lowered:
                problems.append(
                    Problem(path, f"duplicate machine: {lowered[name.lower()].name} has the same name")
                )
                continue
            lowered[name.lower()] = path
            machine_config = _validate(MachineConfig, path, problems)
            if machine_config is None:
                continue
            text = path.read_text()
            check_names(path, machine_config.packages, problems)
            misplaced_vars(path, MachineConfig, machine_config.vars, problems)
            if not _is_address(machine_config.address):
                problems.append(
                    Problem(
                        path,
                        f"{machine_config.address!r} is not an IP address or a host name",
                        line=locate(text, ("address",)),
                        field="address",
                        hint='e.g. address = "192.168.1.20" or "web1.lan"',
                    )
                )
            for index, layer_name in enumerate(machine_config.layers):
                if layer_name not in layers and not (layers_dir / layer_name).is_dir():
                    known = ", ".join(sorted(layers)) or "none"
                    problems.append(
                        Problem(
                            path,
                            f"layer {layer_name!r} does not exist",
                            line=locate(text, ("layers", index)),
                            field=f"layers.{index}",
                            hint=f"create layers/{layer_name}/ or use one of: {known}",
                        )
                    )
            if machine_config.address in addresses:
                problems.append(
                    Problem(
                        path,
                        f"address {machine_config.address} is already used by "
                        f"machines/{addresses[machine_config.address].name}",
                        line=locate(text, ("address",)),
                        field="address",
                    )
                )
            addresses[machine_config.address] = path
            machines[name] = Machine(name, machine_config, path, machines_dir / name)

    images: dict[str, Image] = {}
    for path in sorted((root / "images").glob("*.toml")):
        image_config = _validate(ImageConfig, path, problems)
        if image_config is not None:
            images[path.stem] = Image(path.stem, path, image_config, path.with_suffix(""))
    check_images(images, problems)
    if config is not None and config.serve is not None:
        check_serve(config.serve, root / "site.toml", images, problems)
    workflows = {path.stem for path in (root / "workflows").glob("*.yaml")}
    check_hardware(
        {name: (machine.file, machine.config) for name, machine in machines.items()},
        config.serve if config is not None else None,
        workflows,
        problems,
    )

    site_packages: dict[str, SitePackage] = {}
    for path in sorted((root / "packages").glob("*.toml")):
        package_config = _validate(SitePackageConfig, path, problems)
        if package_config is not None:
            site_packages[path.stem] = SitePackage(path.stem, path, package_config, path.with_suffix(""))
    if config is not None:
        check_config(root / "site.toml", config.packages, set(machines), problems)
        repository = Site(root, config, {}, {}).repository_url
        check_site_packages(site_packages, config.packages, repository, root / "site.toml", problems)
    vpn_peers: dict[str, VpnPeer] = {}
    for path in sorted((root / "vpn").glob("*.toml")):
        peer_config = _validate(VpnPeerConfig, path, problems)
        if peer_config is not None:
            vpn_peers[path.stem] = VpnPeer(path.stem, path, peer_config)
    alerts: dict[str, Alert] = {}
    for path in sorted((root / "alerts").glob("*.toml")):
        alert_config = _validate(AlertConfig, path, problems)
        if alert_config is not None:
            alerts[path.stem] = Alert(path.stem, path, alert_config)
    if config is not None:
        _check_networks(Site(root, config, machines, layers, vpn_peers=vpn_peers, alerts=alerts), problems)
    dns = config.dns if config is not None else None
    # (A machine whose own file is invalid is reported as such, not again here.)
    if dns is not None and not (machines_dir / f"{dns.server}.toml").exists():
        text = (root / "site.toml").read_text()
        problems.append(
            Problem(
                root / "site.toml",
                f"dns.server: no machine {dns.server!r}",
                line=locate(text, ("dns", "server")),
                hint=f"name one of: {', '.join(sorted(machines)) or 'none'}",
            )
        )
    if problems or config is None:
        raise SiteError(problems)
    return Site(
        root=root,
        config=config,
        machines=machines,
        layers=layers,
        images=images,
        site_packages=site_packages,
        vpn_peers=vpn_peers,
        alerts=alerts,
    )


def _check_networks(site: Site, problems: list[Problem]) -> None:
    """[network], [ssh] via and [firewall]: they name machines, so they are checked once all
    machines are known."""
    # Here, not at the top: a deploy that finds the site in its cache never checks it.
    from croft.site.logs import check_logs
    from croft.site.network import check_bridges, check_firewall, check_overlay, check_via, check_vpn

    check_overlay(site.root / "site.toml", site, problems)
    check_vpn(site.root / "site.toml", site, problems)
    check_bridges(site.root / "site.toml", site, problems)
    check_via(site.root / "site.toml", site, problems)
    check_logs(site.root / "site.toml", site, problems)
    for layer in site.layers.values():
        if layer.config.firewall is not None:
            check_firewall(layer.path / "layer.toml", layer.config.firewall, site, problems)
    for machine in site.machines.values():
        if machine.config.firewall is not None:
            check_firewall(machine.file, machine.config.firewall, site, problems)


def _with_service_files(path: Path, config: LayerConfig, problems: list[Problem]) -> LayerConfig:
    """The layer's config with the services of its services/*.toml files added."""
    services = dict(config.services)
    for file in sorted((path / "services").glob("*.toml")):
        name = file.stem
        if name in services:
            problems.append(
                Problem(file, f"service {name!r} is also declared in layer.toml", hint="keep one of them")
            )
            continue
        service = _validate(ServiceConfig, file, problems)
        if service is not None:
            services[name] = service
    return dataclasses.replace(config, services=services)


def misplaced_vars(file: Path, model: Any, variables: dict[str, Any], problems: list[Problem]) -> None:
    """Keys of the file's own that TOML put into [vars] because they follow that header."""
    problem = Reporter(file, problems)
    for key in sorted(({f.name for f in dataclasses.fields(model)} - {"vars"}) & set(variables)):
        problem(
            ("vars", key),
            f"`{key}` is in [vars], as a template variable",
            f"move `{key} = ...` above the [vars] header: a TOML key belongs to the table above it",
        )


def _check_layer(path: Path, config: LayerConfig, problems: list[Problem]) -> None:
    toml = path / "layer.toml"
    text = toml.read_text() if toml.exists() else ""
    misplaced_vars(toml, LayerConfig, config.vars, problems)
    declared: list[tuple[tuple[str | int, ...], str]] = [
        (("secrets", index), glob) for index, glob in enumerate(config.secrets)
    ]
    declared += [(("adopt", index), adopted) for index, adopted in enumerate(config.adopt)]
    for unit, unit_config in config.units.items():
        declared += [
            (("units", unit, "config", index), glob) for index, glob in enumerate(unit_config.config)
        ]
    for loc, glob in declared:
        reason = owned_path_problem(glob)
        if reason:
            field = ".".join(str(part) for part in loc)
            problems.append(Problem(toml, f"{glob!r} {reason}", line=locate(text, loc), field=field))


def _check_tree_top(path: Path, problems: list[Problem]) -> None:
    for entry in sorted(path.iterdir()):
        if entry.name == "usr" and entry.is_dir() and not entry.is_symlink():
            for sub in sorted(entry.iterdir()):
                if sub.name != "local":
                    problems.append(
                        Problem(
                            sub,
                            f"outside {OWNED_ROOT}/: croft owns nothing else on a machine",
                            hint=f"move it under {OWNED_ROOT}/ (to replace a distro file, "
                            "declare a config overlay)",
                        )
                    )
        elif entry.name not in LAYER_RESERVED:
            problems.append(
                Problem(
                    entry,
                    f"outside {OWNED_ROOT}/: a tree holds only usr/local/ and "
                    f"croft's declarations ({', '.join(sorted(LAYER_RESERVED))})",
                    hint=f"move it under {OWNED_ROOT}/",
                )
            )
