"""Parity: the three clouds deploy the same endpoint contract, read from what each stack creates.

Each cloud's resources are reduced to one cloud-neutral contract (image digest, port, size,
scaling, probe paths and timing, environment, exports); the test compares the three, so a
drift in any one cloud's component or stack file fails it and names the field and the cloud.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrator.core.contract import ENDPOINT_EXPORTS
from tests.infra.harness import StackRun

# What every cloud stack exports: the contract orchestrator config from-stacks reads.
EXPORTED_KEYS = set(ENDPOINT_EXPORTS)
# Exports whose value must be the same everywhere (the others name the cloud's own resources).
NEUTRAL_EXPORTS = (
    "cpu",
    "memory",
    "min_instances",
    "max_instances",
    "concurrency",
    "readiness_path",
    "public_name",
)
# The only environment a cloud may add to the common set, and why: a managed identity's account
# and client id, and the token secrets' versions (Container Apps starts no new revision when only
# a secret changes).
EXTRA_ENV = {
    "aws": set(),
    "gcp": set(),
    "azure": {"AZURE_STORAGE_ACCOUNT", "AZURE_CLIENT_ID", "API_TOKEN_VERSIONS"},
}


def _common(env: dict[str, str], run: StackRun) -> dict[str, str]:
    """The environment without MODEL_URI (its bucket differs), after checking MODEL_URI."""
    assert env["MODEL_URI"] == run.exports["model_uri"]
    assert env["MODEL_URI"].endswith("/models/digits/LATEST")
    return {k: v for k, v in env.items() if k != "MODEL_URI"}


def _aws(run: StackRun) -> dict[str, Any]:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition")
    (container,) = json.loads(task["containerDefinitions"])
    target_group = run.one("aws:lb/targetGroup:TargetGroup")
    scaling = run.one("aws:appautoscaling/target:Target")
    service = run.one("aws:ecs/service:Service")
    liveness = container["healthCheck"]
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", liveness["command"][-1])
    assert found is not None, liveness["command"]
    liveness_port, liveness_path = found.groups()
    env = {e["name"]: e["value"] for e in container["environment"]}
    secret_env = sorted(e["name"] for e in container["secrets"])
    assert service["desiredCount"] == scaling["minCapacity"]
    assert int(liveness_port) == container["portMappings"][0]["containerPort"] == target_group["port"]
    return {
        "image": container["image"],
        "port": target_group["port"],
        "vcpu": int(task["cpu"]) / 1024,
        "memory_gib": int(task["memory"]) / 1024,
        "min": scaling["minCapacity"],
        "max": scaling["maxCapacity"],
        "liveness": (liveness_path, liveness["interval"], liveness["timeout"], liveness["retries"]),
        # The ALB keeps a task out of rotation until the readiness path answers; ECS gives it the
        # grace period to get there.
        "startup": (target_group["healthCheck"]["path"], service["healthCheckGracePeriodSeconds"]),
        "readiness_path": target_group["healthCheck"]["path"],
        "env": env,
        "secret_env": secret_env,
    }


def _gcp(run: StackRun) -> dict[str, Any]:
    service = run.one("gcp:cloudrunv2/service:Service")
    template = service["template"]
    (container,) = template["containers"]
    limits = container["resources"]["limits"]
    cpu, memory = limits["cpu"], limits["memory"]
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    env = {e["name"]: e["value"] for e in container["envs"] if "value" in e}
    secret_env = sorted(e["name"] for e in container["envs"] if "valueSource" in e)
    assert "PORT" not in env
    # Cloud Run sets PORT itself, to the container port.
    env["PORT"] = str(int(container["ports"]["containerPort"]))  # the mock monitor's numbers are floats
    return {
        "image": container["image"],
        "port": container["ports"]["containerPort"],
        "vcpu": int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu),
        "memory_gib": float(memory[:-2]) if memory.endswith("Gi") else int(memory[:-2]) / 1024,
        "min": template["scaling"]["minInstanceCount"],
        "max": template["scaling"]["maxInstanceCount"],
        "liveness": (
            liveness["httpGet"]["path"],
            liveness["periodSeconds"],
            liveness["timeoutSeconds"],
            liveness["failureThreshold"],
        ),
        "startup": (startup["httpGet"]["path"], startup["periodSeconds"] * startup["failureThreshold"]),
        # No readiness probe on Cloud Run: an instance serves once its startup probe passed.
        "readiness_path": startup["httpGet"]["path"],
        "env": env,
        "secret_env": secret_env,
        "concurrency": template["maxInstanceRequestConcurrency"],
    }


def _azure(run: StackRun) -> dict[str, Any]:
    app = run.one("azure-native:app:ContainerApp")
    (container,) = app["template"]["containers"]
    probes = {p["type"]: p for p in container["probes"]}
    startup, liveness, readiness = probes["Startup"], probes["Liveness"], probes["Readiness"]
    scale = app["template"]["scale"]
    (rule,) = scale["rules"]
    return {
        "image": container["image"],
        "port": app["configuration"]["ingress"]["targetPort"],
        "vcpu": container["resources"]["cpu"],
        "memory_gib": float(container["resources"]["memory"].removesuffix("Gi")),
        "min": scale["minReplicas"],
        "max": scale["maxReplicas"],
        "liveness": (
            liveness["httpGet"]["path"],
            liveness["periodSeconds"],
            liveness["timeoutSeconds"],
            liveness["failureThreshold"],
        ),
        "startup": (startup["httpGet"]["path"], startup["periodSeconds"] * startup["failureThreshold"]),
        "readiness_path": readiness["httpGet"]["path"],
        "env": {e["name"]: e["value"] for e in container["env"] if "value" in e},
        "secret_env": sorted(e["name"] for e in container["env"] if "secretRef" in e),
        "concurrency": int(rule["http"]["metadata"]["concurrentRequests"]),
    }


def test_the_three_clouds_deploy_the_same_endpoint(cloud_runs: dict[str, StackRun]) -> None:
    contracts: dict[str, dict[str, Any]] = {}
    for cloud, extract in (("aws", _aws), ("gcp", _gcp), ("azure", _azure)):
        run = cloud_runs[cloud]
        contract = extract(run)
        # What runs is what the stack says it runs: the exported image from the exported registry.
        assert (
            contract["image"]
            == run.exports["image"]
            == f"{run.exports['registry']}@{contract['image'].split('@')[1]}"
        )
        contract["digest"] = contract.pop("image").split("@")[1]
        env = contract.pop("env")
        extra = set(env) - {"MODEL_URI", "PORT", "HOST", "MODEL_RELOAD_INTERVAL_S", "MODEL_CACHE_DIR"}
        assert extra == EXTRA_ENV[cloud], (
            f"{cloud}: undocumented extra environment {extra - EXTRA_ENV[cloud]}"
        )
        contract["env"] = _common({k: v for k, v in env.items() if k not in EXTRA_ENV[cloud]}, run)
        contract["exported_keys"] = sorted(run.exports)
        contract["exports"] = {key: run.exports[key] for key in NEUTRAL_EXPORTS}
        contract["exported_size"] = (run.exports["cpu"], run.exports["memory"])
        contract["exported_scaling"] = (run.exports["min_instances"], run.exports["max_instances"])
        contract["exported_readiness"] = run.exports["readiness_path"]
        contract.setdefault("concurrency", run.exports["concurrency"])  # AWS has no per-task limit
        # The health job's config and state live in its own control bucket, never the model
        # bucket; while the job is disabled (gcp and azure stack files) neither exists.
        root = run.exports["model_uri"].removesuffix("/models/digits/LATEST")
        job = run.exports["health_job"]
        if job["enabled"]:
            assert not job["config_uri"].startswith(f"{root}/")
            assert job["config_uri"].endswith("/orchestrator/orchestrator.yaml")
            assert job["state_uri"].endswith("/orchestrator/state.json")
        else:
            assert (job["config_uri"], job["state_uri"]) == (None, None)
        contract["job_keys"] = sorted(job)
        assert run.exports["cloud"] == cloud
        contracts[cloud] = contract

    reference = contracts["aws"]
    drift = {
        f"{field} ({cloud})": (contract[field], reference[field])
        for cloud, contract in contracts.items()
        for field in reference
        if contract[field] != reference[field]
    }
    assert not drift, f"clouds disagree with aws (theirs, aws's): {drift}"
    # And the agreed contract is the configured one.
    assert set(reference["exported_keys"]) == EXPORTED_KEYS
    assert (reference["port"], reference["vcpu"], reference["memory_gib"]) == (8080, 1.0, 2.0)
    assert (reference["min"], reference["max"], reference["concurrency"]) == (1, 3, 80)
    assert reference["readiness_path"] == reference["exported_readiness"] == "/readyz"
    assert reference["liveness"] == ("/healthz", 10, 3, 3)
    assert reference["startup"] == ("/readyz", 120)
    assert reference["exported_size"] == (1.0, 2.0)
    assert reference["exported_scaling"] == (1, 3)
    # identity and federated_roles: what the stacks give each other for identity federation.
    assert reference["job_keys"] == [
        "command",
        "config_uri",
        "enabled",
        "federated_roles",
        "identity",
        "schedule",
        "state_uri",
    ]
    # Both tokens of a rotation, by reference only, under the contract's names.
    assert reference["secret_env"] == ["API_TOKEN", "API_TOKEN_PREVIOUS"]
    assert reference["exports"]["public_name"] == "model.example.com"
    assert reference["env"] == {
        "PORT": "8080",
        "HOST": "0.0.0.0",
        "MODEL_RELOAD_INTERVAL_S": "60",
        "MODEL_CACHE_DIR": "/tmp/model-cache",
    }
