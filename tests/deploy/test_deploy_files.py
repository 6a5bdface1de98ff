"""What an operator relies on in deploy/: the image, compose, the manifests and nginx.conf say
what the README promises (no Docker or Kubernetes needed: the files are read as data).
tests/cluster runs deploy/nginx.conf for real, rendered by deploy/local-cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from filesvc.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# uvicorn's own: which proxy's X-Forwarded-For to trust (not a filesvc setting).
UVICORN_ENV = {"FORWARDED_ALLOW_IPS"}


def settings_names() -> set[str]:
    return {f"FILESVC_{name.upper()}" for name in Settings.model_fields}


def is_setting(name: str) -> bool:
    return name.startswith(("FILESVC_", "AWS_")) or name in UVICORN_ENV


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- Dockerfile ------------------------------------------------------------------------


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) >= 2
    final = stages[-1]
    assert final.startswith("${PYTHON_IMAGE}")
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.11-slim", text)
    user = re.search(r"(?m)^USER (\S+)", final)
    assert user is not None
    assert user[1].split(":")[0] not in {"0", "root"}
    assert re.search(r"(?ms)^HEALTHCHECK .*/healthz", final)
    assert re.search(r'(?m)^ENTRYPOINT \["filesvc"\]$', final)
    assert re.search(r'(?m)^CMD \["serve", ', final)
    # No compiler or package installs in the image that runs.
    assert not re.search(r"apt-get|apk add|gcc|build-essential", final)
    assert "--without-pip" in text
    env_names = re.findall(r"(?m)^\s*(?:ENV\s+)?([A-Z_]+)=", final)
    assert all(
        is_setting(n) or n in {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
        for n in env_names
    ), env_names


# --- compose ---------------------------------------------------------------------------


def test_compose_needs_only_the_admin_password() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    required = re.findall(r"\$\{(\w+):\?", text)
    assert set(required) == {"FILESVC_ADMIN_PASSWORD"}
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"nginx", "filesvc-1", "filesvc-2", "postgres", "redis", "seaweedfs"} <= set(services)
    assert services["nginx"]["ports"] == ["${FILESVC_HTTP_PORT:-8080}:8080"]
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    for name in ("nginx", "postgres", "redis", "seaweedfs"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("filesvc-1", "filesvc-2"):
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        # The image's own HEALTHCHECK applies; nginx waits for both to be healthy.
        assert services["nginx"]["depends_on"][name]["condition"] == "service_healthy"
        assert service["depends_on"]["filesvc-init"]["condition"] == (
            "service_completed_successfully"
        )
        assert "--no-migrate" in service["command"]
        environment = service["environment"]
        assert all(is_setting(key) for key in environment), environment
        assert set(environment) - {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} - UVICORN_ENV <= (
            settings_names() | {"FILESVC_SHUTDOWN_GRACE_SECONDS"}
        )
        assert environment["FILESVC_REDIS_URL"].startswith("redis://")
        assert environment["FILESVC_STORAGE"] == "s3"
    named = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in named, volume


# --- Kubernetes ------------------------------------------------------------------------


def k8s() -> dict[str, dict[str, Any]]:
    resources = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml_documents(path):
            resources[doc["kind"]] = doc
    return resources


def test_kustomization_lists_every_manifest() -> None:
    kustomization = k8s()["Kustomization"]
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_deployment_probes_drains_and_scales() -> None:
    resources = k8s()
    deployment = resources["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    [container] = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]
    assert "--no-migrate" in container["args"]
    assert [c["args"] for c in spec["initContainers"]] == [["migrate"]]
    grace = int(resources["ConfigMap"]["data"]["FILESVC_SHUTDOWN_GRACE_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > grace
    assert spec["securityContext"]["runAsNonRoot"] is True
    sources = {
        ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]
    }
    assert sources == {
        resources["ConfigMap"]["metadata"]["name"],
        resources["Secret"]["metadata"]["name"],
    }


def test_settings_come_from_the_configmap_and_the_secret() -> None:
    resources = k8s()
    keys = set(resources["ConfigMap"]["data"]) | set(resources["Secret"]["stringData"])
    assert all(is_setting(key) for key in keys), keys
    assert {"FILESVC_SECRET_KEY", "FILESVC_DATABASE_URL", "FILESVC_REDIS_URL"} <= set(
        resources["Secret"]["stringData"]
    )
    # Secrets stay out of the ConfigMap.
    assert not {k for k in resources["ConfigMap"]["data"] if "SECRET" in k or "PASSWORD" in k}


def test_the_ingress_streams_and_lifts_the_body_limit() -> None:
    resources = k8s()
    annotations = resources["Ingress"]["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-request-buffering"] == "off"
    assert annotations[prefix + "proxy-buffering"] == "off"
    assert annotations[prefix + "proxy-body-size"] == "0"
    assert int(annotations[prefix + "proxy-read-timeout"]) >= 3600
    assert not any("affinity" in key for key in annotations)
    assert resources["Service"]["spec"]["sessionAffinity"] == "None"


# --- nginx.conf ------------------------------------------------------------------------


def nginx_blocks() -> dict[str, str]:
    """The text of each `location` (and of the server outside them), by its pattern."""
    text = (DEPLOY / "nginx.conf").read_text()
    text = re.sub(r"(?m)#.*$", "", text)
    blocks = dict(re.findall(r"location ([^{]+?) \{([^}]*)\}", text))
    blocks["server"] = re.sub(r"location [^{]+\{[^}]*\}", "", text.split("server {", 1)[1])
    blocks["upstream"] = re.search(r"upstream filesvc \{([^}]*)\}", text)[1]  # type: ignore[index]
    return blocks


def test_nginx_streams_uploads_and_events_without_stickiness() -> None:
    blocks = nginx_blocks()
    server = blocks["server"]
    assert "proxy_request_buffering off;" in server
    # Equal to the service's own limit: nginx never cuts what filesvc would take.
    limit = re.search(r"client_max_body_size (\d+)g;", server)
    assert limit is not None
    assert int(limit[1]) * 1024**3 == Settings().max_upload_bytes
    assert "proxy_set_header X-Request-ID $filesvc_request_id;" in server
    events = blocks["~ ^/api/v1/(events|transfers/[^/]+/events)$"]
    assert "proxy_buffering off;" in events
    assert int(re.search(r"proxy_read_timeout (\d+)s;", events)[1]) >= 3600  # type: ignore[index]
    for path in ("/api/v1/events", "/api/v1/transfers/abc123/events"):
        assert re.match(r"^/api/v1/(events|transfers/[^/]+/events)$", path)
    upstream = blocks["upstream"]
    assert not re.search(r"\b(ip_hash|hash|sticky|least_conn)\b", upstream)
    assert len(re.findall(r"server filesvc-\d+:8000", upstream)) == 2
