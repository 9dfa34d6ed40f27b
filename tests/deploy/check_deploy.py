#!/usr/bin/env python3
"""Checks of what cannot run here (no Docker engine, no cluster, no helm):
the plain manifests parse and describe a master and workers; every flag the
manifests, the Helm chart and the Dockerfile pass to swarmer exists in the
binary's --help; every .Values path the chart's templates use is defined in
values.yaml; the image runs as a non-root user.

Usage: check_deploy.py PATH/TO/swarmer
"""
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
failures = []


def fail(message):
    failures.append(message)


def known_flags(binary):
    text = subprocess.run([binary, "--help"], check=True, capture_output=True, text=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", text)) | set(re.findall(r"\s(-[a-zA-Z])[ ,]", text))


def check_flags(where, args, flags):
    for arg in args:
        if re.fullmatch(r"--?[a-zA-Z][a-z0-9-]*", arg) and arg not in flags:
            fail(f"{where}: swarmer has no flag {arg}")


def check_manifests(flags):
    kinds = []
    for path in sorted((ROOT / "deploy/kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            kinds.append((doc["kind"], doc["metadata"]["name"]))
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in spec.get("containers", []):
                check_flags(f"{path.name} {doc['metadata']['name']}", container.get("args", []), flags)
                if "--worker" in container.get("args", []):
                    check_worker_probes(f"{path.name} {doc['metadata']['name']}", container)
                if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
                    fail(f"{path.name} {doc['metadata']['name']}: pods must run as non-root")
    for wanted in [("Deployment", "swarmer-master"), ("Service", "swarmer-master"), ("Deployment", "swarmer-worker"),
                   ("ConfigMap", "swarmer-plan"), ("Secret", "swarmer-token")]:
        if wanted not in kinds:
            fail(f"deploy/kubernetes: no {wanted[0]} {wanted[1]}")


def check_worker_probes(where, container):
    """A worker serves its health checks (--health-port) on the port its
    liveness (/healthz) and readiness (/readyz) probes ask."""
    args = container.get("args", [])
    if "--health-port" not in args:
        fail(f"{where}: a worker without --health-port cannot be probed")
        return
    port = args[args.index("--health-port") + 1]
    named = {p.get("name"): str(p.get("containerPort")) for p in container.get("ports", [])}
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = container.get(probe, {}).get("httpGet", {})
        asked = named.get(get.get("port"), str(get.get("port")))
        if get.get("path") != path or asked != port:
            fail(f"{where}: {probe} should GET {path} on the --health-port ({port}), not {get}")


def has_path(values, dotted):
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_chart(flags):
    chart = ROOT / "deploy/helm/swarmer"
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    if meta.get("apiVersion") != "v2" or meta.get("name") != "swarmer":
        fail("Chart.yaml: expected apiVersion v2 and name swarmer")
    values = yaml.safe_load((chart / "values.yaml").read_text())
    for template in sorted((chart / "templates").iterdir()):
        text = template.read_text()
        for dotted in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
            if not has_path(values, dotted):
                fail(f"{template.name}: .Values.{dotted} is not in values.yaml")
        literal_args = re.findall(r'^\s*- "(-[^"{}]+)"\s*$', text, re.M)
        check_flags(template.name, literal_args, flags)
        opens, closes = text.count("{{"), text.count("}}")
        if opens != closes:
            fail(f"{template.name}: {opens} '{{{{' but {closes} '}}}}'")
    for key in ["replicas", "nodeSelector", "tolerations", "resources", "healthPort"]:
        if key not in values["worker"]:
            fail(f"values.yaml: worker.{key} missing")
    worker = (chart / "templates/worker-deployment.yaml").read_text()
    for needed in ['"--health-port"', "livenessProbe:", "path: /healthz", "readinessProbe:", "path: /readyz",
                   "containerPort: {{ .Values.worker.healthPort }}"]:
        if needed not in worker:
            fail(f"worker-deployment.yaml: no {needed} (workers are probed on their --health-port)")
    if "existingSecret" not in values["clusterToken"]:
        fail("values.yaml: the token must be able to come from a Secret")


def check_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    if text.count("FROM ") < 2:
        fail("Dockerfile: expected a multi-stage build")
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not user or user[-1] in ("0", "root"):
        fail("Dockerfile: the runtime stage must switch to a non-root USER")
    if 'ENTRYPOINT ["swarmer"]' not in text:
        fail("Dockerfile: the entrypoint must be swarmer")
    for port in ("8089", "5557"):
        if port not in " ".join(re.findall(r"^EXPOSE\s+(.*)$", text, re.M)):
            fail(f"Dockerfile: port {port} is not exposed")


def main():
    flags = known_flags(sys.argv[1])
    check_manifests(flags)
    check_chart(flags)
    check_dockerfile()
    for f in failures:
        print("FAIL:", f)
    print(f"deploy checks: {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
