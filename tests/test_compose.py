"""docker-compose.yml, the Dockerfile and their config files, checked statically.

No Docker engine runs in CI, so nothing here builds an image or starts a container. What can
be checked without one is: every file the stack mounts or copies exists, every image is an
exact version that matches the promtool/amtool/node_exporter the other tests use, every name
and port one service uses to reach another is a service listening there, and the configs pass
their own checkers (`promtool check config`, `load_config`).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from realstack import require

from linborg.exporter.config import load_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DEPLOY_PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
LOCAL_PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "linborg.yml"
DASHBOARD_PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "linborg.yml"
SECRETS_README = ROOT / "deploy" / "secrets" / "README.md"

#: An exact release tag: repository:X.Y.Z (optionally vX.Y.Z), no digest, no floating tag.
PINNED_IMAGE = re.compile(r"(?P<repo>[a-z0-9][a-z0-9._/-]*):v?(?P<version>\d+\.\d+\.\d+)")
#: Host paths outside the repository a service may bind-mount, and why.
HOST_MOUNTS_ALLOWED = {("node-exporter", "/")}  # the host's root, for the filesystem collector


# ------------------------------------------------------------------------------ helpers


def command(service: dict) -> list[str]:
    """Return a service's command as a list of arguments."""
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]


def flag(args: list[str], name: str) -> str | None:
    """Return the value of ``--name=value`` or ``--name value`` in ``args``, or None."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def listen_ports(name: str) -> set[int]:
    """Return the ports a service's process listens on, read from its command or environment."""
    service = SERVICES[name]
    args = command(service)
    ports = set()
    for option in ("--web.listen-address", "--listen"):
        address = flag(args, option)
        if address is not None:
            ports.add(int(address.rpartition(":")[2]))
    if "GF_SERVER_HTTP_PORT" in environment(service):
        ports.add(int(environment(service)["GF_SERVER_HTTP_PORT"]))
    return ports


def published(service: dict) -> list[tuple[str, int, int]]:
    """Return (host ip, host port, container port) of each entry of a service's ports."""
    out = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out.append((entry.get("host_ip", ""), int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split(":")
        assert len(parts) == 3, f"{entry!r}: give HOST_IP:HOST_PORT:CONTAINER_PORT"
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def mounts(service: dict) -> list[tuple[str, str, str]]:
    """Return (source, target, kind) of each volume entry; kind is 'bind' or 'volume'."""
    out = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            out.append((entry["source"], entry["target"], entry["type"]))
            continue
        source, target = str(entry).split(":")[:2]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append((source, target, kind))
    return out


def mount_of(service: dict, container_path: str) -> tuple[str, str]:
    """Return (kind, source with the rest of the path) of the mount holding ``container_path``."""
    path = PurePosixPath(container_path)
    best = None
    for source, target, kind in mounts(service):
        holds = path == PurePosixPath(target) or PurePosixPath(target) in path.parents
        if holds and (best is None or len(target) > len(best[1])):
            best = (source, target, kind)
    assert best is not None, f"nothing is mounted at {container_path}"
    source, target, kind = best
    rest = path.relative_to(target)
    return kind, source if str(rest) == "." else f"{source.rstrip('/')}/{rest}"


def repo_path(service: dict, container_path: str) -> Path:
    """Return the repository file or folder bind-mounted at ``container_path``."""
    kind, source = mount_of(service, container_path)
    assert kind == "bind" and source.startswith("./"), f"{container_path} is not from the repo"
    return ROOT / source


def service_address(url_or_target: str) -> tuple[str, int]:
    """Return (host, port) of 'http://host:port/...' or 'host:port'."""
    parts = urlsplit(url_or_target if "//" in url_or_target else "//" + url_or_target)
    assert parts.hostname and parts.port, f"{url_or_target!r} names no host and port"
    return parts.hostname, parts.port


def assert_reaches_service(where: str, address: str) -> str:
    host, port = service_address(address)
    assert host in SERVICES, f"{where}: {address} names no compose service ({sorted(SERVICES)})"
    assert port in listen_ports(host), (
        f"{where}: {address}: service {host} listens on {sorted(listen_ports(host))}"
    )
    return host


def tool_version(binary: str) -> tuple[int, int]:
    """Return (major, minor) of ``binary --version``; fail when the binary is missing."""
    result = subprocess.run(
        [require(binary), "--version"], capture_output=True, text=True, timeout=30
    )
    m = re.search(r"version (\d+)\.(\d+)\.", result.stdout + result.stderr)
    assert m, f"cannot read the version of {binary}: {result.stdout + result.stderr!r}"
    return int(m.group(1)), int(m.group(2))


def image_version(image: str) -> tuple[int, int]:
    m = PINNED_IMAGE.fullmatch(image)
    assert m, f"{image} is not pinned to an exact version"
    major, minor, _ = m.group("version").split(".")
    return int(major), int(minor)


def images_of(repository: str) -> dict[str, str]:
    """Return {service: image} of the services running an image of ``repository``."""
    found = {
        name: s["image"]
        for name, s in SERVICES.items()
        if "image" in s and s["image"].rsplit(":", 1)[0] == repository
    }
    assert found, f"no service runs {repository}"
    return found


def dockerfile() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        instruction, _, args = (pending + line).strip().partition(" ")
        out.append((instruction.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return out


def copies() -> list[tuple[list[str], str, int]]:
    """Return (sources, destination, instruction index) of each COPY, flags left out."""
    out = []
    for i, (instruction, args) in enumerate(dockerfile()):
        if instruction == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            out.append((words[:-1], words[-1], i))
    return out


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def _pattern(text: str) -> re.Pattern:
    """Translate a .dockerignore pattern (Go filepath.Match plus '**') into a regex."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out))


def dockerignored(rel: str) -> bool:
    """Tell whether .dockerignore keeps ``rel`` out of the build context (last match wins)."""
    parts = PurePosixPath(rel).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for raw in dockerignore_patterns():
        negated = raw.startswith("!")
        regex = _pattern(raw.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negated
    return excluded


# ------------------------------------------------------------------------------ images


def test_every_image_is_an_exact_version_or_built_from_the_dockerfile():
    for name, service in SERVICES.items():
        if "image" in service:
            image = service["image"]
            assert "latest" not in image and "@" not in image, f"{name}: {image}"
            assert PINNED_IMAGE.fullmatch(image), f"{name}: {image} is not an exact version tag"
        else:
            build = service.get("build")
            assert isinstance(build, dict), f"{name}: neither image nor build"
            assert (build["context"], build.get("dockerfile", "Dockerfile")) == (".", "Dockerfile")


def test_prometheus_image_is_the_version_of_promtool():
    want = tool_version("promtool")
    for name, image in images_of("prom/prometheus").items():
        assert image_version(image) == want, f"{name}: {image}, promtool is {want}"


def test_alertmanager_image_is_the_version_of_amtool():
    want = tool_version("amtool")
    for name, image in images_of("prom/alertmanager").items():
        assert image_version(image) == want, f"{name}: {image}, amtool is {want}"


def test_node_exporter_image_is_the_version_the_recording_rules_are_tested_with():
    want = tool_version("prometheus-node-exporter")
    for name, image in images_of("prom/node-exporter").items():
        assert image_version(image) == want, f"{name}: {image}, node_exporter is {want}"


def test_grafana_image_is_a_10_or_11_release():
    [(name, image)] = images_of("grafana/grafana").items()
    assert image_version(image)[0] in (10, 11), f"{name}: {image}"


# ------------------------------------------------------------------ ports, mounts, volumes


def test_ports_are_published_on_loopback_to_a_port_the_service_listens_on():
    seen = set()
    for name, service in SERVICES.items():
        for host_ip, host_port, container_port in published(service):
            assert host_ip == "127.0.0.1", f"{name}: port {host_port} is published on {host_ip!r}"
            assert container_port in listen_ports(name), f"{name}: nothing on {container_port}"
            assert host_port not in seen, f"{name}: host port {host_port} is published twice"
            seen.add(host_port)
        for port in service.get("expose", []):
            assert int(port) in listen_ports(name), f"{name}: exposes {port}, listens elsewhere"
    assert {"prometheus", "alertmanager", "grafana", "exporter", "generator"} <= {
        name for name, s in SERVICES.items() if s.get("ports")
    }


def test_every_bind_mounted_host_path_exists_in_the_repo():
    for name, service in SERVICES.items():
        for source, target, kind in mounts(service):
            if kind != "bind":
                continue
            if source.startswith("/"):
                assert (name, source) in HOST_MOUNTS_ALLOWED, f"{name}: host path {source}"
                continue
            assert source.startswith("./"), f"{name}: {source}: bind-mount repo paths as ./..."
            path = (ROOT / source).resolve()
            assert path.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
            assert path.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_named_volumes_are_declared_and_data_survives_restarts():
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for source, _target, kind in mounts(service):
            if kind == "volume":
                assert source in declared, f"{name}: volume {source} is not declared"
    storage = flag(command(SERVICES["prometheus"]), "--storage.tsdb.path")
    assert mount_of(SERVICES["prometheus"], storage)[0] == "volume"
    assert mount_of(SERVICES["grafana"], "/var/lib/grafana")[0] == "volume"


def test_services_depend_only_on_services():
    for name, service in SERVICES.items():
        for other in service.get("depends_on", []):
            assert other in SERVICES and other != name, f"{name} depends on {other}"


# --------------------------------------------------------------------------- Prometheus


def deploy_prometheus() -> dict:
    return yaml.safe_load(DEPLOY_PROMETHEUS.read_text())


def test_prometheus_reads_deploy_prometheus_yml():
    config = flag(command(SERVICES["prometheus"]), "--config.file")
    assert repo_path(SERVICES["prometheus"], config) == DEPLOY_PROMETHEUS


def test_every_scrape_target_is_a_service_listening_on_that_port():
    targets = []
    for job in deploy_prometheus()["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                targets.append(assert_reaches_service(job["job_name"], target))
    assert {"generator", "exporter", "node-exporter"} <= set(targets)


def test_the_alerting_target_is_the_alertmanager_service():
    [am] = deploy_prometheus()["alerting"]["alertmanagers"]
    targets = [t for static in am["static_configs"] for t in static["targets"]]
    assert [assert_reaches_service("alerting", t) for t in targets] == ["alertmanager"]


def test_jobs_are_those_of_prometheus_yml_with_service_names_as_targets():
    def without_targets(doc):
        return {
            job["job_name"]: {k: v for k, v in job.items() if k != "static_configs"}
            for job in doc["scrape_configs"]
        }

    local = yaml.safe_load(LOCAL_PROMETHEUS.read_text())
    deploy = deploy_prometheus()
    assert without_targets(deploy) == without_targets(local)
    assert deploy["global"] == local["global"]
    assert without_targets(deploy)["linborg-exporter"]["honor_labels"] is True
    assert [PurePosixPath(f).name for f in deploy["rule_files"]] == [
        PurePosixPath(f).name for f in local["rule_files"]
    ]


def test_rule_files_are_the_repo_rules_mounted_into_the_container():
    prometheus = SERVICES["prometheus"]
    rules_dir = ROOT / "prometheus" / "rules"
    for rule_file in deploy_prometheus()["rule_files"]:
        path = repo_path(prometheus, rule_file)
        assert path.parent == rules_dir, f"{rule_file} maps to {path}, not prometheus/rules/"
        assert path.is_file(), f"{rule_file} maps to {path}, which does not exist"
    assert {repo_path(prometheus, f) for f in deploy_prometheus()["rule_files"]} == set(
        rules_dir.glob("*.yml")
    )


def test_promtool_check_config_passes_with_the_rules_at_their_repo_paths(tmp_path):
    doc = deploy_prometheus()
    doc["rule_files"] = [
        str(repo_path(SERVICES["prometheus"], f).resolve()) for f in doc["rule_files"]
    ]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run(
        [require("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_backfill_loads_the_generators_file_into_prometheus_storage_before_it_starts():
    generator, backfill, prometheus = (SERVICES[n] for n in ("generator", "backfill", "prometheus"))
    written = flag(command(generator), "--backfill")
    promtool_args = backfill.get("entrypoint", []) + command(backfill)
    assert promtool_args[:4] == ["promtool", "tsdb", "create-blocks-from", "openmetrics"]
    read, blocks = promtool_args[4:6]
    assert mount_of(generator, written)[1] == mount_of(backfill, read)[1], "not the same file"
    storage = flag(command(prometheus), "--storage.tsdb.path")
    assert mount_of(backfill, blocks) == mount_of(prometheus, storage), "not the same volume"
    assert backfill["depends_on"]["generator"]["condition"] == "service_healthy"
    assert prometheus["depends_on"]["backfill"]["condition"] == "service_completed_successfully"
    assert backfill.get("restart") == "no"


# ----------------------------------------------------------------------------- exporter


def test_exporter_config_loads_and_queries_the_prometheus_service():
    exporter = SERVICES["exporter"]
    path = repo_path(exporter, flag(command(exporter), "--config.file"))
    assert path == ROOT / "deploy" / "exporter.yml"
    cfg = load_config(path)
    assert assert_reaches_service("deploy/exporter.yml", cfg.prometheus_url) == "prometheus"
    model_copies = [(dest, i) for sources, dest, i in copies() if sources == ["models/default"]]
    # The first copy is package data for pip install .; the config names the last one.
    dest, i = model_copies[-1]
    workdirs = [a for n, (ins, a) in enumerate(dockerfile()) if ins == "WORKDIR" and n < i]
    assert cfg.model_bundle == str(PurePosixPath(workdirs[-1]) / dest), "not the image's model"


def test_exporter_service_runs_the_images_default_command():
    """Its arguments may go on (``--shard i/N``, docs/docker.md), but start as the image's."""
    [cmd] = [json.loads(a) for ins, a in dockerfile() if ins == "CMD"]
    assert command(SERVICES["exporter"])[: len(cmd)] == cmd


# ------------------------------------------------------------------------------ Grafana


def test_grafana_datasources_are_services_with_stable_uids():
    grafana = SERVICES["grafana"]
    assert repo_path(grafana, "/etc/grafana/provisioning/datasources") == DATASOURCES.parent
    sources = {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert set(sources) == {"linborg-prometheus", "linborg-forecasts"}
    assert sources["linborg-forecasts"]["name"] == "LINBORG forecasts"
    for uid, source in sources.items():
        assert source["type"] == "prometheus", uid
    assert assert_reaches_service("linborg-prometheus", sources["linborg-prometheus"]["url"]) == (
        "prometheus"
    )
    assert assert_reaches_service("linborg-forecasts", sources["linborg-forecasts"]["url"]) == (
        "exporter"
    )


def test_grafana_dashboards_provider_reads_the_mounted_dashboards_folder():
    grafana = SERVICES["grafana"]
    assert repo_path(grafana, "/etc/grafana/provisioning/dashboards") == DASHBOARD_PROVIDERS.parent
    [provider] = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert repo_path(grafana, provider["options"]["path"]) == ROOT / "grafana" / "dashboards"


# ------------------------------------------------------------------------- Alertmanager


def test_alertmanager_reads_the_repo_config_and_templates():
    am = SERVICES["alertmanager"]
    config = flag(command(am), "--config.file")
    assert repo_path(am, config) == ALERTMANAGER_CONFIG
    for pattern in yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["templates"]:
        # Alertmanager resolves template globs against the config file's folder.
        in_container = PurePosixPath(config).parent / pattern
        folder = repo_path(am, str(in_container.parent))
        assert list(folder.glob(in_container.name)), f"{pattern}: no template in {folder}"


def test_every_secret_file_is_under_the_mounted_secrets_folder_and_documented():
    """The secrets themselves are the user's (deploy/secrets/README.md): none need exist here."""
    am = SERVICES["alertmanager"]
    assert repo_path(am, "/etc/alertmanager/secrets") == ROOT / "deploy" / "secrets"
    text = ALERTMANAGER_CONFIG.read_text()
    files = set(re.findall(r"^\s*(?:-\s*)?\w+_file:\s*(\S+)", text, re.MULTILINE))
    assert files, "alertmanager.yml reads no secret file"
    readme = SECRETS_README.read_text()
    for path in sorted(files):
        assert path.startswith("/etc/alertmanager/secrets/"), f"{path} is outside the mount"
        assert f"`{PurePosixPath(path).name}`" in readme, f"{path} is not in {SECRETS_README}"


# ---------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_image_is_an_exact_python_3_11_release():
    [base] = [a for ins, a in dockerfile() if ins == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base


def test_torch_cpu_build_is_installed_before_the_project():
    runs = [(i, a) for i, (ins, a) in enumerate(dockerfile()) if ins == "RUN"]
    torch = [i for i, a in runs if "pip install" in a and "torch==2.13.0" in a]
    assert torch, "no RUN installs torch==2.13.0"
    assert all("--index-url https://download.pytorch.org/whl/cpu" in dict(runs)[i] for i in torch)
    project = [i for i, a in runs if re.search(r"pip install \.(\s|$|&)", a)]
    assert project, "no RUN pip install ."
    assert max(torch) < min(project), "torch must be installed before the project"


def test_everything_pip_install_needs_is_copied_before_it():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = meta["tool"]["setuptools"]["package-dir"]
    packages = meta["tool"]["setuptools"]["packages"]

    # A package's folder: its package-dir entry, or its parent's folder + its last name.
    def folder(package: str) -> str:
        if package in folders:
            return folders[package]
        parent, _, name = package.rpartition(".")
        return f"{folder(parent)}/{name}" if parent else package

    needed = {"pyproject.toml", meta["project"]["readme"]}
    needed |= {f"{folder(p)}/__init__.py" for p in packages}
    [install] = [i for i, (ins, a) in enumerate(dockerfile()) if "pip install ." in a]
    copied = {s.rstrip("/") for sources, _, i in copies() if i < install for s in sources}
    missing = {n for n in needed if not any(n == c or n.startswith(c + "/") for c in copied)}
    # Package data folders: the __init__.py and the data files must both be copied.
    for package, patterns in meta["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            for f in (ROOT / folder(package)).glob(pattern):
                rel = f.relative_to(ROOT).as_posix()
                if not any(rel == c or rel.startswith(c + "/") for c in copied):
                    missing.add(rel)
    assert not missing, f"not copied before pip install .: {sorted(missing)}"


def test_every_copied_path_exists_and_is_in_the_build_context():
    for sources, dest, _ in copies():
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source} {dest}: no such path"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                if "__pycache__" in f.parts or f.suffix == ".pyc":
                    continue
                assert not dockerignored(rel), f"{rel} (COPY {source}) is excluded"


def test_dockerignore_keeps_out_the_venv_git_outputs_and_secrets():
    for path in (".venv/bin/python", ".git/HEAD", "out/x.parquet", "deploy/secrets/key"):
        assert dockerignored(path), f"{path} would be sent to the Docker daemon"
    assert dockerignored("linborg/__pycache__/cli.cpython-311.pyc")
    assert not dockerignored("models/default/model.safetensors")


def test_image_runs_as_a_non_root_user():
    users = [a for ins, a in dockerfile() if ins == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("ENTRYPOINT", ["linborg"]),
        (
            "CMD",
            [
                "serve",
                "--config.file=/etc/linborg/exporter.yml",
                "--web.listen-address=0.0.0.0:9106",
            ],
        ),
    ],
)
def test_entrypoint_and_default_command(instruction, expected):
    [args] = [a for ins, a in dockerfile() if ins == instruction]
    assert json.loads(args) == expected
