"""Each cloud stack under mocks: the resources it creates and the inputs they get.

Security properties (private buckets, TLS, least privilege) are in test_security.py, the
cross-cloud contract in test_parity.py, DNS in test_dns.py, bad configuration in test_config.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.infra.conftest import ENDPOINT_COMPONENTS, HOSTED_ZONE_ID, PRIVATE_INVOKER, PUBLIC_NAME
from tests.infra.harness import ROOT, StackRun

COMMON_ENV = {"MODEL_URI", "PORT", "HOST", "MODEL_RELOAD_INTERVAL_S", "MODEL_CACHE_DIR"}


def _inventory(run: StackRun) -> Counter[str]:
    return Counter(r.type for r in run.resources if r.custom)


def _container_definition(run: StackRun) -> Any:
    (container,) = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    return container


# --- the project -------------------------------------------------------------------------------


def test_project_file_runs_infra_with_the_repository_virtualenv() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "ml-orchestrator"
    assert project["main"] == "infra/"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert project["description"]
    assert (ROOT / "infra" / "__main__.py").is_file()
    for stack in ("aws", "gcp", "azure", "dns"):
        assert (ROOT / f"Pulumi.{stack}.yaml").is_file()


def test_every_resource_belongs_to_the_stacks_components(runs: dict[str, StackRun]) -> None:
    """The endpoint's component, and the health job's beside it when the job is enabled."""
    for name, run in runs.items():
        cloud = run.stack.capitalize()
        endpoint, job = f"ml-orchestrator:infra:{cloud}Endpoint", f"ml-orchestrator:infra:{cloud}HealthJob"
        expected = [endpoint, job] if run.exports["health_job"]["enabled"] else [endpoint]
        # Sorted: components register through concurrent RPCs, in no fixed order.
        assert sorted(r.type for r in run.resources if not r.custom) == sorted(expected), name
        orphans = [
            r.name
            for r in run.resources
            if r.custom and not any(f"{component}$" in r.urn for component in expected)
        ]
        assert not orphans, f"{name}: not parented to a component: {orphans}"


def test_each_stack_imports_only_its_own_provider_sdk(runs: dict[str, StackRun]) -> None:
    """A cloud's stack loads one provider SDK (each is hundreds of MB); dns loads AWS's (Route 53)."""
    sdk = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "azure": "pulumi_azure_native", "dns": "pulumi_aws"}
    for name, run in runs.items():
        if run.error is None:
            assert run.providers == [sdk[run.stack]], name


# Maps whose keys are the user's, not the provider's schema (GCP labels: email_address...).
_USER_MAPS = ("labels", "tags", "dimensions", "metadata")
_SNAKE = re.compile(r"[a-z]+(_[a-z0-9]+)+")


def _snake_keys(node: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if _SNAKE.fullmatch(str(key)):
                found.append(f"{path}.{key}")
            if str(key) not in _USER_MAPS:
                found += _snake_keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            found += _snake_keys(value, f"{path}[]")
    return found


def test_every_input_reaches_the_provider_with_its_wire_names(runs: dict[str, StackRun]) -> None:
    """A plain dict passed where a provider expects a union of shapes is not translated to the wire
    (camelCase) names: the provider would get ``all_of`` for ``allOf`` and ignore or refuse it."""
    for name, run in runs.items():
        found = [key for r in run.resources for key in _snake_keys(r.inputs, r.type)]
        assert not found, f"{name}: {found}"


def test_no_deprecated_resource_or_argument_is_used(runs: dict[str, StackRun]) -> None:
    for name, run in runs.items():
        deprecated = [m for m in run.warnings() if "deprecated" in m.lower()]
        assert not deprecated, f"{name}: {deprecated}"


# --- AWS -------------------------------------------------------------------------------------


AWS_STORAGE = {
    # the model bucket and the access log bucket
    "aws:s3/bucket:Bucket": 2,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 2,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 2,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 2,
    "aws:s3/bucketPolicy:BucketPolicy": 2,
    "aws:s3/bucketVersioning:BucketVersioning": 1,  # the models; access logs expire instead
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1,
    "aws:s3/bucketLogging:BucketLogging": 1,
}
AWS_ENTRY = {
    "aws:ecr/repository:Repository": 1,
    "aws:cloudwatch/logGroup:LogGroup": 1,
    "aws:iam/role:Role": 2,
    "aws:iam/rolePolicy:RolePolicy": 2,
    "aws:ec2/securityGroup:SecurityGroup": 2,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": 3,  # 80 and 443 in, the port from the ALB
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 2,
    "aws:lb/loadBalancer:LoadBalancer": 1,
    "aws:lb/targetGroup:TargetGroup": 1,
    "aws:lb/listener:Listener": 2,  # HTTPS, and HTTP redirecting to it
    "aws:lb/listenerRule:ListenerRule": 1,  # the public names reach the tasks
    "aws:acm/certificate:Certificate": 1,
    "aws:acm/certificateValidation:CertificateValidation": 1,
    "aws:route53/record:Record": 3,  # two validation records, aws.<public name>
    "aws:ecs/cluster:Cluster": 1,
}
AWS_SERVICE = {
    "aws:ecs/taskDefinition:TaskDefinition": 1,
    "aws:ecs/service:Service": 1,
    "aws:appautoscaling/target:Target": 1,
    "aws:appautoscaling/policy:Policy": 1,
}
AWS_TOKENS = {"aws:secretsmanager/secret:Secret": 2, "aws:secretsmanager/secretVersion:SecretVersion": 2}


def test_aws_creates_exactly_the_endpoint_resources(aws_run: StackRun) -> None:
    assert _inventory(aws_run) == {**AWS_STORAGE, **AWS_ENTRY, **AWS_SERVICE, **AWS_TOKENS}


def test_first_up_creates_no_service_and_no_job_and_says_so(runs: dict[str, StackRun]) -> None:
    """The committed stack files have no image: registries, buckets and the entry, nothing that
    would run a placeholder image (and the AWS job, enabled there, waits for the image too)."""
    aws = runs["aws_first_up"].ok()
    deployer = {"aws:iam/role:Role": 3, "aws:iam/rolePolicy:RolePolicy": 3}  # this variant has deployers
    assert _inventory(aws.within(ENDPOINT_COMPONENTS["aws"])) == {**AWS_STORAGE, **AWS_ENTRY, **deployer}
    for name in ("aws_first_up", "gcp_first_up", "azure_first_up"):
        run = runs[name].ok()
        types = {r.type for r in run.resources}
        assert not types & {
            "aws:ecs/taskDefinition:TaskDefinition",
            "aws:ecs/service:Service",
            "aws:scheduler/schedule:Schedule",
            "gcp:cloudrunv2/service:Service",
            "gcp:cloudrunv2/job:Job",
            "gcp:cloudscheduler/job:Job",
            "azure-native:app:ContainerApp",
            "azure-native:app:Job",
        }, name
        assert not [r for r in run.resources if "HealthJob" in r.type], name
        assert run.exports["image"] is None
        assert run.exports["health_job"]["enabled"] is False  # configured on (aws, and here gcp/azure)
        assert run.exports["registry"]  # where `orchestrator image push` copies the image
        assert run.exports["model_uri"]  # where `orchestrator sync` publishes
        assert any("no image configured (ml-orchestrator:endpoint.image)" in m for m in run.warnings()), name
        assert any("no API token" in m for m in run.warnings()), name
    # The entry exists already, so the dns stack can point the public name at it.
    assert runs["aws_first_up"].exports["endpoint_url"] == f"https://aws.{PUBLIC_NAME}"
    assert runs["gcp_first_up"].exports["endpoint_url"] == f"https://gcp.{PUBLIC_NAME}"
    assert runs["azure_first_up"].exports["endpoint_url"].startswith("https://ml-endpoint.")


def test_aws_registry_is_immutable_and_scans_on_push(aws_run: StackRun) -> None:
    repository = aws_run.one("aws:ecr/repository:Repository")
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert aws_run.exports["registry"] == repository.outputs["repositoryUrl"]
    assert aws_run.exports["image"] == f"{repository.outputs['repositoryUrl']}@{_digest(aws_run)}"


def test_aws_target_group_checks_the_readiness_path(aws_run: StackRun) -> None:
    target_group = aws_run.one("aws:lb/targetGroup:TargetGroup")
    assert target_group["port"] == 8080
    assert target_group["protocol"] == "HTTP"
    assert target_group["targetType"] == "ip"
    check = target_group["healthCheck"]
    assert check["path"] == "/readyz"
    assert check["port"] == "traffic-port"
    assert check["matcher"] == "200"
    assert (check["interval"], check["timeout"], check["unhealthyThreshold"]) == (10, 3, 3)


def test_aws_without_public_name_serves_http_and_warns(aws_http_run: StackRun) -> None:
    listener = aws_http_run.one("aws:lb/listener:Listener")
    target_group = aws_http_run.one("aws:lb/targetGroup:TargetGroup")
    alb = aws_http_run.one("aws:lb/loadBalancer:LoadBalancer")
    assert (listener["port"], listener["protocol"]) == (80, "HTTP")
    assert listener["defaultActions"] == [{"type": "forward", "targetGroupArn": target_group.outputs["arn"]}]
    assert listener["loadBalancerArn"] == alb.outputs["arn"]
    assert any("public_name" in m and "plain HTTP" in m for m in aws_http_run.warnings())
    assert aws_http_run.exports["endpoint_url"] == f"http://{alb.outputs['dnsName']}"
    assert not aws_http_run.of_type("aws:acm/certificate:Certificate")
    assert aws_http_run.exports["public_name"] is None


def test_aws_serves_the_public_name_over_https_and_redirects_http(aws_run: StackRun) -> None:
    listeners = {r["port"]: r for r in aws_run.of_type("aws:lb/listener:Listener")}
    assert set(listeners) == {80, 443}
    https, http = listeners[443], listeners[80]
    assert https["protocol"] == "HTTPS"
    assert https["sslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    # The listener takes the certificate from its validation: only an ISSUED one.
    validation = aws_run.one("aws:acm/certificateValidation:CertificateValidation")
    certificate = aws_run.one("aws:acm/certificate:Certificate")
    assert https["certificateArn"] == validation.outputs["certificateArn"] == certificate.outputs["arn"]
    assert (certificate["domainName"], certificate["subjectAlternativeNames"]) == (
        PUBLIC_NAME,
        [f"aws.{PUBLIC_NAME}"],
    )
    assert certificate["validationMethod"] == "DNS"
    # One validation record per name, in the public name's zone, and the validation waits for both.
    options = {o["domainName"]: o for o in certificate.outputs["domainValidationOptions"]}
    records = {r["name"]: r for r in aws_run.of_type("aws:route53/record:Record")}
    fqdns = []
    for domain, option in options.items():
        record = records[option["resourceRecordName"]]
        assert (record["zoneId"], record["type"], record["records"]) == (
            HOSTED_ZONE_ID,
            "CNAME",
            [option["resourceRecordValue"]],
        ), domain
        fqdns.append(record.outputs["fqdn"])
    assert sorted(validation["validationRecordFqdns"]) == sorted(fqdns)
    # Unknown host names get 421; the public names (and only they) reach the tasks.
    assert https["defaultActions"][0]["type"] == "fixed-response"
    assert https["defaultActions"][0]["fixedResponse"]["statusCode"] == "421"
    rule = aws_run.one("aws:lb/listenerRule:ListenerRule")
    target_group = aws_run.one("aws:lb/targetGroup:TargetGroup")
    assert rule["listenerArn"] == https.outputs["arn"]
    assert rule["conditions"] == [{"hostHeader": {"values": [PUBLIC_NAME, f"aws.{PUBLIC_NAME}"]}}]
    assert rule["actions"] == [{"type": "forward", "targetGroupArn": target_group.outputs["arn"]}]
    assert http["defaultActions"] == [
        {"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}}
    ]
    assert not any("plain HTTP" in m for m in aws_run.warnings())
    # aws.<public name>: the weighted record's target, an alias of the load balancer.
    assert aws_run.exports["endpoint_url"] == f"https://aws.{PUBLIC_NAME}"
    alias = records[f"aws.{PUBLIC_NAME}"]
    alb = aws_run.one("aws:lb/loadBalancer:LoadBalancer")
    assert (alias["zoneId"], alias["type"]) == (HOSTED_ZONE_ID, "A")
    assert alias["aliases"][0]["name"] == alb.outputs["dnsName"]
    assert (aws_run.exports["public_name"], aws_run.exports["dns_records"]) == (PUBLIC_NAME, [])
    assert aws_run.exports["health_check_ip"] is None  # an ALB has no fixed address
    ingress_ports = {
        r["fromPort"]
        for r in aws_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.get("cidrIpv4")
    }
    assert ingress_ports == {80, 443}


def test_aws_task_runs_the_pinned_image_with_the_common_environment(aws_run: StackRun) -> None:
    task = aws_run.one("aws:ecs/taskDefinition:TaskDefinition")
    assert (task["cpu"], task["memory"]) == ("1024", "2048")
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    roles = {r.name: r.outputs["arn"] for r in aws_run.of_type("aws:iam/role:Role")}
    assert task["executionRoleArn"] == roles["ml-endpoint-execution"]
    assert task["taskRoleArn"] == roles["ml-endpoint-task"]
    container = _container_definition(aws_run)
    assert container["image"] == aws_run.exports["image"]
    assert container["portMappings"] == [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env == {
        "MODEL_URI": aws_run.exports["model_uri"],
        "PORT": "8080",
        "HOST": "0.0.0.0",
        "MODEL_RELOAD_INTERVAL_S": "60",
        "MODEL_CACHE_DIR": "/tmp/model-cache",
    }
    assert "http://127.0.0.1:8080/healthz" in container["healthCheck"]["command"][-1]
    log_group = aws_run.one("aws:cloudwatch/logGroup:LogGroup")
    assert log_group["retentionInDays"] == 30
    assert container["logConfiguration"]["options"]["awslogs-group"] == log_group.outputs["name"]


def test_aws_service_scales_between_min_and_max_behind_the_load_balancer(aws_run: StackRun) -> None:
    service = aws_run.one("aws:ecs/service:Service")
    target_group = aws_run.one("aws:lb/targetGroup:TargetGroup")
    cluster = aws_run.one("aws:ecs/cluster:Cluster")
    task_sg = next(
        r for r in aws_run.of_type("aws:ec2/securityGroup:SecurityGroup") if r.name.endswith("-task")
    )
    assert service["launchType"] == "FARGATE"
    assert service["desiredCount"] == 1
    assert service["cluster"] == cluster.outputs["arn"]
    assert service["loadBalancers"] == [
        {"targetGroupArn": target_group.outputs["arn"], "containerName": "endpoint", "containerPort": 8080}
    ]
    assert service["healthCheckGracePeriodSeconds"] == 120  # the startup budget, as on the other clouds
    assert service["networkConfiguration"] == {
        "subnets": ["subnet-0a", "subnet-0b", "subnet-0c"],  # the default VPC's, from the mocked lookup
        "securityGroups": [task_sg.outputs["id"]],
        "assignPublicIp": True,
    }
    # Autoscaling owns the task count; the target group is attached to a listener first.
    assert service.ignore_changes == ["desiredCount"]
    assert aws_run.one("aws:lb/listenerRule:ListenerRule").urn in service.depends_on
    # The default VPC's subnets are looked up by the default VPC's id.
    (subnets_call,) = [c for c in aws_run.calls if c["token"] == "aws:ec2/getSubnets:getSubnets"]
    assert {"name": "vpc-id", "values": ["vpc-0default"]} in subnets_call["args"]["filters"]
    scaling = aws_run.one("aws:appautoscaling/target:Target")
    assert (scaling["minCapacity"], scaling["maxCapacity"]) == (1, 3)
    assert scaling["resourceId"] == f"service/{cluster.outputs['name']}/{service.outputs['name']}"
    policy = aws_run.one("aws:appautoscaling/policy:Policy")
    tracking = policy["targetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["predefinedMetricSpecification"]["predefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    )
    assert tracking["targetValue"] == 60


def test_aws_tasks_accept_traffic_only_from_the_load_balancer(aws_http_run: StackRun) -> None:
    aws_run = aws_http_run
    groups = {r.name: r.outputs["id"] for r in aws_run.of_type("aws:ec2/securityGroup:SecurityGroup")}
    alb_sg, task_sg = groups["ml-endpoint-alb"], groups["ml-endpoint-task"]
    ingress = aws_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    into_tasks = [r for r in ingress if r["securityGroupId"] == task_sg]
    assert [
        (r["fromPort"], r["toPort"], r.get("referencedSecurityGroupId"), r.get("cidrIpv4"))
        for r in into_tasks
    ] == [(8080, 8080, alb_sg, None)]
    into_alb = [(r["fromPort"], r["cidrIpv4"]) for r in ingress if r["securityGroupId"] == alb_sg]
    assert into_alb == [(80, "0.0.0.0/0")]


# --- GCP ---------------------------------------------------------------------------------------


GCP_LOAD_BALANCER = {
    "gcp:compute/globalAddress:GlobalAddress": 1,
    "gcp:certificatemanager/dnsAuthorization:DnsAuthorization": 2,
    "gcp:certificatemanager/certificate:Certificate": 1,
    "gcp:certificatemanager/certificateMap:CertificateMap": 1,
    "gcp:certificatemanager/certificateMapEntry:CertificateMapEntry": 2,
    "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup": 1,
    "gcp:compute/backendService:BackendService": 1,
    "gcp:compute/uRLMap:URLMap": 2,  # to the backend; the redirect to HTTPS
    "gcp:compute/sSLPolicy:SSLPolicy": 1,
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy": 1,
    "gcp:compute/targetHttpProxy:TargetHttpProxy": 1,
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": 2,
}


def test_gcp_creates_exactly_the_endpoint_resources(gcp_run: StackRun) -> None:
    assert _inventory(gcp_run) == {
        "gcp:projects/service:Service": 6,
        "gcp:artifactregistry/repository:Repository": 1,
        "gcp:storage/bucket:Bucket": 1,
        "gcp:projects/iAMAuditConfig:IAMAuditConfig": 1,
        "gcp:serviceaccount/account:Account": 1,
        "gcp:storage/bucketIAMMember:BucketIAMMember": 1,
        "gcp:secretmanager/secret:Secret": 2,
        "gcp:secretmanager/secretVersion:SecretVersion": 2,
        "gcp:secretmanager/secretIamMember:SecretIamMember": 2,
        "gcp:cloudrunv2/service:Service": 1,
        "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding": 1,
        **GCP_LOAD_BALANCER,
    }
    apis = {r["service"]: r["disableOnDestroy"] for r in gcp_run.of_type("gcp:projects/service:Service")}
    assert apis == {
        "run.googleapis.com": False,
        "artifactregistry.googleapis.com": False,
        "iam.googleapis.com": False,
        "compute.googleapis.com": False,
        "certificatemanager.googleapis.com": False,
        "secretmanager.googleapis.com": False,
    }


def test_gcp_registry_holds_the_image_with_immutable_tags(gcp_run: StackRun) -> None:
    repository = gcp_run.one("gcp:artifactregistry/repository:Repository")
    assert (repository["format"], repository["location"]) == ("DOCKER", "us-central1")
    assert repository["dockerConfig"] == {"immutableTags": True}
    assert gcp_run.exports["registry"] == f"{repository.outputs['registryUri']}/ml-endpoint"
    assert gcp_run.exports["image"] == f"{gcp_run.exports['registry']}@{_digest(gcp_run)}"


def test_gcp_cloud_run_service(gcp_http_run: StackRun) -> None:
    gcp_run = gcp_http_run
    service = gcp_run.one("gcp:cloudrunv2/service:Service")
    account = gcp_run.one("gcp:serviceaccount/account:Account")
    assert (service["location"], service["ingress"]) == ("us-central1", "INGRESS_TRAFFIC_ALL")
    assert service["name"] == "ml-endpoint"  # fixed: the load balancer's NEG names it
    template = service["template"]
    assert template["serviceAccount"] == account.outputs["email"]
    assert template["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 3}
    assert template["maxInstanceRequestConcurrency"] == 80
    (container,) = template["containers"]
    assert container["image"] == gcp_run.exports["image"]
    assert container["ports"] == {"containerPort": 8080}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert container["resources"]["cpuIdle"] is False  # background model polling needs CPU
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": 8080}
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] == 120
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    env = {e["name"]: e["value"] for e in container["envs"]}
    # Cloud Run refuses PORT in env: it sets it from ports.containerPort.
    assert env == {
        "MODEL_URI": gcp_run.exports["model_uri"],
        "HOST": "0.0.0.0",
        "MODEL_RELOAD_INTERVAL_S": "60",
        "MODEL_CACHE_DIR": "/tmp/model-cache",
    }
    assert gcp_run.exports["endpoint_url"] == service.outputs["uri"]
    # The first revision can read its model: the grant exists before the service.
    assert gcp_run.one("gcp:storage/bucketIAMMember:BucketIAMMember").urn in service.depends_on


def test_gcp_invokers_are_public_by_default(gcp_run: StackRun) -> None:
    binding = gcp_run.one("gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding")
    service = gcp_run.one("gcp:cloudrunv2/service:Service")
    assert binding["role"] == "roles/run.invoker"
    assert binding["members"] == ["allUsers"]
    assert (binding["name"], binding["location"]) == (service.outputs["name"], "us-central1")


def test_gcp_invokers_can_be_a_list_of_members(gcp_private_run: StackRun) -> None:
    binding = gcp_private_run.one("gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding")
    assert binding["members"] == [PRIVATE_INVOKER]
    assert "allUsers" not in json.dumps([r.inputs for r in gcp_private_run.resources])


# --- Azure ---------------------------------------------------------------------------------------


def test_azure_creates_exactly_the_endpoint_resources(azure_run: StackRun) -> None:
    assert _inventory(azure_run) == {
        "azure-native:resources:ResourceGroup": 1,
        "azure-native:storage:StorageAccount": 1,
        "azure-native:storage:BlobServiceProperties": 1,
        "azure-native:storage:BlobContainer": 1,
        "azure-native:monitor:DiagnosticSetting": 1,  # blob access logs
        "azure-native:containerregistry:Registry": 1,
        "azure-native:managedidentity:UserAssignedIdentity": 1,
        # models, images, and the two token secrets
        "azure-native:authorization:RoleAssignment": 4,
        "azure-native:keyvault:Vault": 1,
        "azure-native:keyvault:Secret": 2,
        "azure-native:operationalinsights:Workspace": 1,
        "azure-native:app:ManagedEnvironment": 1,
        "azure-native:app:ContainerApp": 1,
        "azure-native:app:ManagedCertificate": 1,
    }
    group = azure_run.one("azure-native:resources:ResourceGroup")
    for resource in azure_run.resources:
        if (
            resource.custom
            and resource.type != "azure-native:resources:ResourceGroup"
            and "location" in resource.inputs
        ):
            assert resource["location"] == "westeurope", resource.name
            assert resource["resourceGroupName"] == group.outputs["name"], resource.name


def test_azure_container_app(azure_http_run: StackRun) -> None:
    azure_run = azure_http_run
    app = azure_run.one("azure-native:app:ContainerApp")
    identity = azure_run.one("azure-native:managedidentity:UserAssignedIdentity")
    registry = azure_run.one("azure-native:containerregistry:Registry")
    environment = azure_run.one("azure-native:app:ManagedEnvironment")
    account = azure_run.one("azure-native:storage:StorageAccount")
    assert app["managedEnvironmentId"] == environment.outputs["id"]
    assert app["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [identity.outputs["id"]]}
    configuration = app["configuration"]
    assert configuration["ingress"] == {
        "external": True,
        "targetPort": 8080,
        "transport": "auto",
        "allowInsecure": False,
    }
    assert configuration["registries"] == [
        {"server": registry.outputs["loginServer"], "identity": identity.outputs["id"]}
    ]
    (container,) = app["template"]["containers"]
    assert container["image"] == azure_run.exports["image"]
    assert container["resources"] == {"cpu": 1.0, "memory": "2Gi"}
    probes = {p["type"]: p for p in container["probes"]}
    assert {kind: p["httpGet"]["path"] for kind, p in probes.items()} == {
        "Startup": "/readyz",
        "Readiness": "/readyz",
        "Liveness": "/healthz",
    }
    assert all(p["httpGet"]["port"] == 8080 for p in probes.values())
    assert probes["Startup"]["periodSeconds"] * probes["Startup"]["failureThreshold"] == 120
    scale = app["template"]["scale"]
    assert (scale["minReplicas"], scale["maxReplicas"]) == (1, 3)
    assert scale["rules"] == [
        {"name": "http-concurrency", "http": {"metadata": {"concurrentRequests": "80"}}}
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "MODEL_URI": azure_run.exports["model_uri"],
        "PORT": "8080",
        "HOST": "0.0.0.0",
        "MODEL_RELOAD_INTERVAL_S": "60",
        "MODEL_CACHE_DIR": "/tmp/model-cache",
        # The managed identity's two unavoidable extras (infra/azure.py, AZURE_EXTRA_ENV).
        "AZURE_STORAGE_ACCOUNT": account.outputs["name"],
        "AZURE_CLIENT_ID": identity.outputs["clientId"],
    }
    assert azure_run.exports["endpoint_url"] == f"https://{app.outputs['configuration']['ingress']['fqdn']}"
    # The first revision can pull and read: both role assignments exist before the app.
    assignments = {a.urn for a in azure_run.of_type("azure-native:authorization:RoleAssignment")}
    assert assignments <= set(app.depends_on)
    assert azure_run.exports["storage_settings"] == {
        "account_url": f"https://{account.outputs['name']}.blob.core.windows.net"
    }


def test_azure_environment_logs_to_its_workspace(azure_run: StackRun) -> None:
    environment = azure_run.one("azure-native:app:ManagedEnvironment")
    workspace = azure_run.one("azure-native:operationalinsights:Workspace")
    logs = environment["appLogsConfiguration"]
    assert "appLogsConfiguration" in environment.secrets  # it carries the workspace's shared key
    assert logs["destination"] == "log-analytics"
    assert logs["logAnalyticsConfiguration"]["customerId"] == workspace.outputs["customerId"]
    assert environment["workloadProfiles"] == [{"name": "Consumption", "workloadProfileType": "Consumption"}]
    assert workspace["retentionInDays"] == 30


# --- exports -------------------------------------------------------------------------------------


def test_model_uri_names_the_latest_pointer_in_the_stacks_bucket(cloud_runs: dict[str, StackRun]) -> None:
    buckets = {
        "aws": (
            "s3",
            _by_name(cloud_runs["aws"], "aws:s3/bucket:Bucket", "ml-endpoint-models").outputs["bucket"],
        ),
        "gcp": ("gs", cloud_runs["gcp"].one("gcp:storage/bucket:Bucket").outputs["name"]),
        "azure": ("az", cloud_runs["azure"].one("azure-native:storage:BlobContainer").outputs["name"]),
    }
    for cloud, (scheme, bucket) in buckets.items():
        assert cloud_runs[cloud].exports["model_uri"] == f"{scheme}://{bucket}/models/digits/LATEST"
    assert re.fullmatch(r"az://models/models/digits/LATEST", cloud_runs["azure"].exports["model_uri"])


def _by_name(run: StackRun, typ: str, name: str) -> Any:
    (found,) = [r for r in run.of_type(typ) if r.name == name]
    return found


def _digest(run: StackRun) -> str:
    return str(run.config["ml-orchestrator:endpoint"]["image"]).split("@")[1]


def test_stack_files_configure_no_image_and_one_public_name() -> None:
    """The first `up` runs with the committed files: no image (nothing to run yet), and the same
    public name in every cloud file as the dns stack's record."""
    endpoints = [
        yaml.safe_load(Path(ROOT, f"Pulumi.{s}.yaml").read_text())["config"]["ml-orchestrator:endpoint"]
        for s in ("aws", "gcp", "azure")
    ]
    assert all("image" not in endpoint for endpoint in endpoints)
    dns = yaml.safe_load(Path(ROOT, "Pulumi.dns.yaml").read_text())["config"]["ml-orchestrator:dns"]
    assert {endpoint["public_name"] for endpoint in endpoints} == {dns["record_name"]} == {PUBLIC_NAME}
    aws = yaml.safe_load(Path(ROOT, "Pulumi.aws.yaml").read_text())["config"]["ml-orchestrator:aws"]
    assert aws["hosted_zone_id"] == dns["zone_id"]
