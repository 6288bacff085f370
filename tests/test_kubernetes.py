"""deploy/kubernetes/: every build renders with `kubectl kustomize` and validates offline.

Kubernetes objects are checked against the API schemas kubernetes-validate ships (strict: an
unknown field fails); the prometheus-operator objects, whose CRDs are not among them, against
the fields they must have. The PrometheusRules carry the rule files of `linborg rules` byte for
byte and pass `promtool check rules`; the dashboard ConfigMaps carry the JSON of `linborg
dashboards`; the generated folder regenerates identically. kubectl and promtool are required:
without them these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from linborg.app.cli import build_parser, main
from linborg.app.kubernetes import (
    DASHBOARD_LABEL,
    GENERATED_DIR,
    dashboard_object_name,
    rule_object_name,
)
from linborg.contract import shard_of
from linborg.exporter.config import ConfigError, config_from_dict, parse_shard
from linborg.mixin import CONFIG
from linborg.mixin.rulefiles import RULE_FILES, dump_rules

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in (KUBE / "overlays").glob("*/kustomization.yaml"))
#: Everything that renders: the base and each overlay.
BUILDS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]
#: The oldest and the newest Kubernetes API schemas the manifests are validated against.
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.latest_version())
#: kubectl apply's client-side mode keeps a copy of each object in an annotation, and all
#: annotations of an object together may hold at most this many bytes.
ANNOTATIONS_LIMIT_BYTES = 262_144
#: A ConfigMap's data may hold at most 1 MiB.
CONFIGMAP_LIMIT_BYTES = 1_048_576
STATEFULSET = "linborg-exporter"
CONTAINER = "exporter"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: these tests need it (CI has it), so they fail here"
    return path


@cache
def render(build: str) -> tuple[dict, ...]:
    """Return the objects `kubectl kustomize deploy/kubernetes/<build>` writes."""
    return _kustomize(KUBE / build)


def _kustomize(folder: Path) -> tuple[dict, ...]:
    r = subprocess.run(
        [tool("kubectl"), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, f"kubectl kustomize {folder} failed:\n{r.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(r.stdout) if doc)


def one(objects, kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects) -> dict:
    pod = one(objects, "StatefulSet", STATEFULSET)["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == CONTAINER)


def env(objects) -> dict[str, dict]:
    return {e["name"]: e for e in container(objects)["env"]}


def exporter_config(objects) -> tuple[dict, str]:
    """Return the exporter.yml of the build, parsed, and the name of its ConfigMap."""
    maps = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("linborg-exporter-config")
    ]
    assert len(maps) == 1, [m["metadata"]["name"] for m in maps]
    return yaml.safe_load(maps[0]["data"]["exporter.yml"]), maps[0]["metadata"]["name"]


def test_there_are_overlays_for_one_replica_shards_and_a_cluster_backend():
    assert {"single", "sharded", "victoriametrics-cluster"} <= set(OVERLAYS), OVERLAYS
    assert one(render("overlays/single"), "StatefulSet")["spec"]["replicas"] == 1
    assert one(render("overlays/sharded"), "StatefulSet")["spec"]["replicas"] > 1


# --- Kubernetes schemas -------------------------------------------------------------------------

#: The fields of the prometheus-operator objects these manifests use, as the CRDs of
#: monitoring.coreos.com/v1 define them (a typo, or a field in the wrong place, fails).
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": _LABELS,
        "annotations": _LABELS,
    },
    "additionalProperties": False,
}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": _LABELS},
                    "additionalProperties": False,
                },
                "namespaceSelector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string"},
                            "scrapeTimeout": {"type": "string"},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
_RULE = {
    "type": "object",
    "required": ["expr"],
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "additionalProperties": False,
    "properties": {
        "record": {"type": "string"},
        "alert": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "for": {"type": "string"},
        "keep_firing_for": {"type": "string"},
        "labels": _LABELS,
        "annotations": _LABELS,
    },
}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string"},
                            "rules": {"type": "array", "minItems": 1, "items": _RULE},
                        },
                    },
                }
            },
        },
    },
}
CUSTOM_SCHEMAS = {
    "ServiceMonitor": SERVICE_MONITOR_SCHEMA,
    "PrometheusRule": PROMETHEUS_RULE_SCHEMA,
}


@pytest.mark.parametrize("build", BUILDS)
def test_every_object_validates_against_the_kubernetes_schemas(build):
    objects = render(build)
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted(
        [
            "ConfigMap",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet",
        ]
    )
    for obj in objects:
        what = f"{build}: {obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CUSTOM_SCHEMAS:
            try:
                jsonschema.validate(obj, CUSTOM_SCHEMAS[obj["kind"]])
            except jsonschema.ValidationError as err:
                pytest.fail(f"{what}: {err.message} at {list(err.absolute_path)}")
            continue
        for version in KUBERNETES_VERSIONS:
            # SchemaNotFoundError is not caught: an object without a schema fails the test.
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{what} (Kubernetes {version}): {err.message} at {list(err.path)}")
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "linborg", what


def test_the_validation_catches_a_misplaced_field():
    """The checks above can fail: a typo'd field and a missing required one are rejected."""
    sts = json.loads(json.dumps(one(render("base"), "StatefulSet")))
    sts["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES_VERSIONS[0], strict=True)
    monitor = json.loads(json.dumps(one(render("base"), "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["honorlabels"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    rule = json.loads(json.dumps(one(render("base"), "PrometheusRule", "linborg-alerts")))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)


@pytest.mark.parametrize("build", BUILDS)
def test_objects_fit_their_size_limits_and_the_docs_apply_server_side(build):
    sizes = {
        f"{o['kind']}/{o['metadata']['name']}": len(json.dumps(o, separators=(",", ":")))
        for o in render(build)
    }
    for name, size in sizes.items():
        assert size < CONFIGMAP_LIMIT_BYTES, f"{name} is {size} bytes"
    big = [name for name, size in sizes.items() if size > ANNOTATIONS_LIMIT_BYTES]
    # Every `kubectl apply` command shown, in docs/kubernetes.md and the kustomizations' comments.
    texts = [ROOT / "docs" / "kubernetes.md", *KUBE.glob("**/kustomization.yaml")]
    applies = [
        line
        for path in texts
        for line in re.findall(r"^[#\s]*(kubectl apply[^\n]*)", path.read_text(), re.M)
    ]
    assert len(applies) >= 3, applies
    if big:  # client-side apply would fail on them: "metadata.annotations: Too long"
        for line in applies:
            assert "--server-side" in line, f"{line!r}: {', '.join(big)} need --server-side"


# --- generated objects --------------------------------------------------------------------------


def test_generated_folder_regenerates_into_an_empty_folder_identically(tmp_path, capsys):
    out = tmp_path / "generated"
    assert main(["kubernetes", "--out", str(out)]) == 0
    committed = ROOT / GENERATED_DIR
    generated = sorted(p.name for p in out.iterdir())
    assert sorted(p.name for p in committed.iterdir()) == generated, (
        f"{GENERATED_DIR}/ holds other files than `linborg kubernetes` writes"
    )
    for name in generated:
        assert (out / name).read_bytes() == (committed / name).read_bytes(), (
            f"{GENERATED_DIR}/{name} is stale: run `linborg kubernetes` and commit"
        )
    assert str(out / "kustomization.yaml") in capsys.readouterr().out


@cache
def rule_texts() -> dict[str, str]:
    from linborg.mixin.rulefiles import render_all

    return render_all()


def test_the_committed_prometheus_rules_hold_the_rule_files_byte_for_byte():
    """Under `spec:`, each generated manifest is its rule file's text, indented."""
    for file_name, text in rule_texts().items():
        header, body = text.split("\n", 1)
        assert header.startswith("# Generated by `linborg rules`")
        name = rule_object_name(file_name)
        manifest = (ROOT / GENERATED_DIR / f"prometheusrule-{name}.yaml").read_text()
        assert manifest.endswith("\nspec:\n" + textwrap.indent(body, "  ")), name


@pytest.mark.parametrize("build", BUILDS)
def test_every_build_carries_exactly_the_generated_rules(build):
    """kustomize re-sorts keys, so what it renders is compared as data, lists in order."""
    rules = {o["metadata"]["name"]: o for o in render(build) if o["kind"] == "PrometheusRule"}
    assert sorted(rules) == sorted(rule_object_name(f) for f in RULE_FILES)
    for file_name, text in rule_texts().items():
        spec = rules[rule_object_name(file_name)]["spec"]
        assert spec == yaml.safe_load(text), f"{build}: {rule_object_name(file_name)}"


def test_the_prometheus_rules_pass_promtool(tmp_path):
    files = []
    for obj in render("base"):
        if obj["kind"] == "PrometheusRule":
            path = tmp_path / f"{obj['metadata']['name']}.yml"
            path.write_text(dump_rules(obj["spec"]))
            files.append(str(path))
    assert len(files) == len(RULE_FILES)
    r = subprocess.run(
        [tool("promtool"), "check", "rules", *files], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(files), r.stdout
    # ... and it is a check that can fail: a broken expression is refused.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        dump_rules({"groups": [{"name": "x", "rules": [{"record": "a:b", "expr": "sum("}]}]})
    )
    r = subprocess.run([tool("promtool"), "check", "rules", str(broken)], capture_output=True)
    assert r.returncode != 0


@pytest.mark.parametrize("build", BUILDS)
def test_dashboard_configmaps_hold_the_generated_json_for_the_sidecar(build):
    from linborg.mixin.dashboards import render_all

    dashboards = render_all()
    maps = {
        o["metadata"]["name"]: o
        for o in render(build)
        if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard")
    }
    assert sorted(maps) == sorted(dashboard_object_name(f) for f in dashboards)
    for file_name, text in dashboards.items():
        cm = maps[dashboard_object_name(file_name)]
        assert cm["metadata"]["labels"].items() >= DASHBOARD_LABEL.items()
        assert cm["data"] == {file_name: text}, f"{build}: {file_name} differs"
        assert (ROOT / "grafana" / "dashboards" / file_name).read_text() == text


@pytest.mark.parametrize("build", BUILDS)
def test_grafana_datasource_points_at_the_exporter_service(build):
    objects = render(build)
    cm = one(objects, "ConfigMap", "linborg-grafana-datasource")
    assert cm["metadata"]["labels"]["grafana_datasource"] == "1"
    (text,) = cm["data"].values()
    (source,) = yaml.safe_load(text)["datasources"]
    assert source["uid"] == CONFIG["forecasts_datasource_uid"] and source["type"] == "prometheus"
    service = one(objects, "Service", "linborg-exporter")
    url = urlsplit(source["url"])
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.port == service["spec"]["ports"][0]["port"]


# --- the exporter -------------------------------------------------------------------------------


@pytest.mark.parametrize("build", BUILDS)
def test_shard_count_equals_the_replica_count(build):
    objects = render(build)
    sts = one(objects, "StatefulSet", STATEFULSET)
    variables = env(objects)
    assert variables["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert int(variables["LINBORG_SHARDS"]["value"]) == sts["spec"]["replicas"], (
        f"{build}: LINBORG_SHARDS is not the replica count; keep the overlay's replacements"
    )
    assert "--shard=$(POD_NAME)/$(LINBORG_SHARDS)" in container(objects)["args"]


def test_changing_only_the_replica_count_re_shards(tmp_path):
    """An overlay's one count drives both replicas and N (its `replacements` copy it)."""
    overlay = tmp_path / "seven"
    overlay.mkdir()
    text = (KUBE / "overlays" / "sharded" / "kustomization.yaml").read_text()
    assert text.count("count: 3") == 1 and text.count("../../base") == 1
    base = os.path.relpath(KUBE / "base", overlay)  # kustomize refuses absolute paths
    text = text.replace("count: 3", "count: 7").replace("../../base", base)
    (overlay / "kustomization.yaml").write_text(text)
    objects = _kustomize(overlay)
    assert one(objects, "StatefulSet")["spec"]["replicas"] == 7
    assert env(objects)["LINBORG_SHARDS"]["value"] == "7"


FLEET = (
    [f"ppml{i:04d}" for i in range(1, 301)]
    + [f"ppdb{i:03d}" for i in range(1, 201)]
    + [f"ppweb{i:03d}" for i in range(1, 301)]
    + [f"ppetl{i:03d}" for i in range(1, 101)]
    + [f"db-{i}.prod.example.com" for i in range(100)]
)


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_pod_ordinals_cover_the_fleet_exactly_once(shards):
    """Pods <set>-0 .. <set>-(N-1), started with --shard=$(POD_NAME)/N, own each server once."""
    name = one(render("base"), "StatefulSet")["metadata"]["name"]
    owned: dict[str, list[int]] = {server: [] for server in FLEET}
    for ordinal in range(shards):
        index, count = parse_shard(f"{name}-{ordinal}/{shards}")
        assert (index, count) == (ordinal, shards)
        mine = [s for s in FLEET if shard_of(s, count) == index]  # the exporter's filter
        assert mine, f"shard {ordinal}/{shards} owns no server of {len(FLEET)}"
        for server in mine:
            owned[server].append(ordinal)
    assert {server: pods for server, pods in owned.items() if len(pods) != 1} == {}


@pytest.mark.parametrize(
    ("text", "shard"),
    [
        ("0/1", (0, 1)),
        ("2/3", (2, 3)),
        ("linborg-exporter-2/3", (2, 3)),
        ("linborg-exporter-12/20", (12, 20)),
        ("web-0-1/3", (1, 3)),
    ],
)
def test_a_shard_is_a_number_or_a_statefulset_pod_name(text, shard):
    assert parse_shard(text) == shard
    assert config_from_dict({"shard": text}).shard_index == shard[0]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("linborg-exporter-3/3", "the ordinal 3 of pod linborg-exporter-3 is not below the shard"),
        ("3/3", "must be i/N with 0 <= i < N"),
        ("$(POD_NAME)/3", "must be i/N"),  # the env variable was not set
        ("linborg-exporter-0/$(LINBORG_SHARDS)", "must be i/N"),
        ("linborg-exporter/3", "must be i/N"),  # a Deployment's pod: no ordinal
        ("Linborg-1/3", "must be i/N"),  # not a Kubernetes name
        ("linborg-exporter-0/0", "must be i/N"),
    ],
)
def test_a_shard_that_cannot_be_right_is_refused(text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_shard(text)


def test_serve_refuses_a_pod_beyond_the_shard_count(tmp_path):
    """A replica added without N following it crash-loops with a reason, it does not idle."""
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("interval: 5m\n")
    r = subprocess.run(
        [sys.executable, "-m", "linborg", "serve", f"--config.file={cfg}"]
        + ["--shard=linborg-exporter-3/3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "--shard: shard 'linborg-exporter-3/3': the ordinal 3" in r.stderr
    assert "Traceback" not in r.stderr


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("build", BUILDS)
def test_the_config_map_loads_and_its_files_are_in_the_pod(build, tmp_path):
    objects = render(build)
    doc, config_map = exporter_config(objects)
    c = container(objects)
    pod = one(objects, "StatefulSet", STATEFULSET)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}

    # --config.file is the ConfigMap's exporter.yml, under the (hash-suffixed) name it got.
    (config_file,) = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--config.file=")]
    folder, _, key = config_file.rpartition("/")
    assert key == "exporter.yml" and mounts[folder]["configMap"]["name"] == config_map

    # Credentials come from files in the mounted Secret, required when the config uses it.
    prom = doc.get("prometheus", {})
    secret_files = [
        prom.get("bearer_token_file"),
        prom.get("ca_file"),
        prom.get("basic_auth", {}).get("password_file"),
    ]
    for path in filter(None, secret_files):
        volume = mounts[str(Path(path).parent)]
        assert volume["secret"]["optional"] is False, f"{build}: {path} from an optional Secret"
        # The file is there in the pod; here a stand-in lets the rest of the config load.
        stand_in = tmp_path / Path(path).name
        stand_in.write_text("secret\n")
        for section in (prom, prom.get("basic_auth", {})):
            for k, v in section.items():
                if v == path:
                    section[k] = str(stand_in)
    cfg = config_from_dict(doc, f"{build}/exporter.yml")

    # state_file sits on a writable emptyDir (the root filesystem is read-only).
    assert cfg.state_file and "emptyDir" in mounts[str(Path(cfg.state_file).parent)]
    # The model bundle is the one the Dockerfile copies into the image.
    assert cfg.model_bundle == "/opt/linborg/models/default"
    assert "WORKDIR /opt/linborg\nCOPY models/default ./models/default\n" in dockerfile()
    assert (ROOT / "models" / "default" / "model.json").is_file()

    # The query API's port is what the NetworkPolicy lets out.
    policy = one(objects, "NetworkPolicy")
    out_ports = {p["port"] for p in policy["spec"]["egress"][0]["ports"]}
    assert urlsplit(cfg.prometheus_url).port in out_ports, f"{build}: {cfg.prometheus_url}"


def test_a_config_map_with_a_bad_key_would_fail(tmp_path):
    doc, _ = exporter_config(render("base"))
    doc["state_fle"] = doc.pop("state_file")
    with pytest.raises(ConfigError, match="state_fle: unknown key"):
        config_from_dict(doc)


@pytest.mark.parametrize("build", BUILDS)
def test_the_pod_runs_unprivileged_with_probes_and_resources(build):
    objects = render(build)
    pod = one(objects, "StatefulSet", STATEFULSET)["spec"]["template"]["spec"]
    c = container(objects)
    uid = re.search(r"^USER (\d+):(\d+)$", dockerfile(), re.M)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid.group(1)) != 0
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (port,) = c["ports"]
    listen = next(a for a in c["args"] if a.startswith("--web.listen-address="))
    assert listen.endswith(f":{port['containerPort']}")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] == port["name"]
    # Memory: the limit covers the largest peak RSS docs/scaling.md measured.
    scaling = (ROOT / "docs" / "scaling.md").read_text()
    peak = max(float(x) for x in re.findall(r"\| ([\d.]+) GiB \|", scaling))
    limit = c["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and float(limit[:-2]) >= peak
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}


@pytest.mark.parametrize("build", BUILDS)
def test_scrapes_reach_the_job_the_rules_select(build):
    objects = render(build)
    sts = one(objects, "StatefulSet", STATEFULSET)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service", sts["spec"]["serviceName"])
    monitor = one(objects, "ServiceMonitor")
    assert service["spec"]["clusterIP"] == "None"  # the StatefulSet's governing Service
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    # prometheus-operator names the job after the Service (there is no jobLabel).
    assert "jobLabel" not in monitor["spec"]
    job = service["metadata"]["name"]
    assert CONFIG["exporter_selector"] == f'job="{job}"', "the rules and dashboards select it"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        spec = one(objects, kind)["spec"]
        selector = spec.get("selector", spec.get("podSelector"))["matchLabels"]
        assert selector.items() <= pod_labels.items(), kind


@pytest.mark.parametrize("build", BUILDS)
def test_images_are_the_one_the_repo_builds(build):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = f"linborg:{version}"
    pod = one(render(build), "StatefulSet", STATEFULSET)["spec"]["template"]["spec"]
    images = {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
    assert images == {image}
    # docs/docker.md tells how to build and tag it.
    assert f"docker build -t {image} ." in (ROOT / "docs" / "docker.md").read_text()
    assert dockerfile().startswith("# The LINBORG image")


def test_docs_name_every_overlay_and_only_paths_that_exist():
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    for name in OVERLAYS:
        assert f"deploy/kubernetes/overlays/{name}" in doc, name
    for path in set(re.findall(r"deploy/kubernetes/[\w./-]*[\w]", doc)):
        assert (ROOT / path).exists(), f"docs/kubernetes.md names {path}, which does not exist"
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc):
        if not link.startswith("http"):
            assert (ROOT / "docs" / link).resolve().exists(), f"docs/kubernetes.md links {link}"
    parser = build_parser()
    for command in set(re.findall(r"^\s*linborg (\w+)", doc, re.M)):
        assert parser.parse_known_args([command])[0].command == command
    assert "docs/kubernetes.md" in (ROOT / "README.md").read_text()
