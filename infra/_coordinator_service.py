"""The coordinator as an ECS Fargate service of the template, for deployers who let the stack
run it: off until ``CoordinatorImage`` names the image built from the repository's
``Dockerfile``, and then two replicas behind no load balancer.

::

    CoordinatorImage = ""             nothing below exists: the stack is what it was without it
    CoordinatorImage, CoordinatorVpc, cluster, log group, security group, task definition, and
    CoordinatorSubnets given          a service keeping two tasks healthy on /q/health/ready

Each task runs ``tpf coordinator`` as the stack's coordinator role, with the stack's names and
the ``secretsmanager:`` references of its secrets in the environment: never a secret's value.
Given ``CoordinatorTlsCertificate`` and ``CoordinatorTlsKey`` (the deployer's secrets), the API
serves HTTPS itself, and the role may read those two secrets as well.

The two replicas share work as any two coordinators do (conditional writes, SQS), so ECS may
replace either at any time; a deployment that never goes healthy rolls back.
"""

from __future__ import annotations

from typing import Any

from infra import _hardening, _secrets, iam
from infra.resources import StackDescription

ON_FARGATE = "CoordinatorOnFargate"
SERVES_HTTPS = "CoordinatorServesHttps"
TLS_GRANT = "CoordinatorTlsSecretsPolicy"
ECS_TASKS = "ecs-tasks.amazonaws.com"
CLUSTER = "CoordinatorCluster"
LOG_GROUP = "CoordinatorLogGroup"
EXECUTION_ROLE = "CoordinatorTaskExecutionRole"
SECURITY_GROUP = "CoordinatorSecurityGroup"
TASK_DEFINITION = "CoordinatorTaskDefinition"
SERVICE = "CoordinatorFargateService"
CONTAINER = "coordinator"
API_PORT = 8081
REPLICAS = 2
CPU_UNITS = "256"
"""A quarter vCPU: the coordinator waits on DynamoDB and SQS far more than it computes."""
MEMORY_MB = "512"
HTTPS_PORT = 443
"""Every AWS API the coordinator and the image pull use answers on HTTPS; nothing else goes out."""
STOP_TIMEOUT_S = 60
"""Seconds ECS waits after SIGTERM: the default profile's 30 s drain, and room to spare."""
READY_PATH = "/q/health/ready"
HEALTH_CHECK = [
    "CMD",
    "python",
    "-c",
    # The slim image has no curl; urlopen raises on a 503, so the exit status says DOWN. Over
    # HTTPS the certificate names the service, not 127.0.0.1, and the check asks its own
    # process on loopback: nothing to verify.
    "import os, ssl, urllib.request; "
    "scheme = 'https' if os.environ.get('TPF_TLS_CERTIFICATE') else 'http'; "
    f"urllib.request.urlopen(f'{{scheme}}://127.0.0.1:{API_PORT}{READY_PATH}', timeout=4, "
    "context=ssl._create_unverified_context())",
]

_SECRET_ARN = r"^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$"

PARAMETERS: dict[str, dict[str, Any]] = {
    "CoordinatorImage": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": r"^$|^[a-z0-9][\w.:/@-]*$",
        "Description": "Image of the coordinator (built from the Dockerfile); empty runs none",
    },
    # Strings, not the AWS::EC2 parameter types: those refuse the empty default that leaves the
    # coordinator out.
    "CoordinatorVpc": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": r"^$|^vpc-[0-9a-f]+$",
        "Description": "VPC of the coordinator tasks (with CoordinatorImage)",
    },
    "CoordinatorSubnets": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": r"^$|^subnet-[0-9a-f]+(,subnet-[0-9a-f]+)*$",
        "Description": "Comma-separated subnets of the coordinator tasks, in CoordinatorVpc",
    },
    "CoordinatorClientCidr": {
        "Type": "String",
        "Default": "10.0.0.0/8",
        "AllowedPattern": r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$",
        "Description": f"Addresses that may call the coordinator's API (TCP {API_PORT})",
    },
    "CoordinatorTlsCertificate": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": _SECRET_ARN,
        "Description": "Secret (ARN) holding the PEM certificate chain of the API; empty: HTTP",
    },
    "CoordinatorTlsKey": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": _SECRET_ARN,
        "Description": "Secret (ARN) holding the PEM private key of CoordinatorTlsCertificate",
    },
    "CoordinatorPublicIp": {
        "Type": "String",
        "Default": "DISABLED",
        "AllowedValues": ["DISABLED", "ENABLED"],
        "Description": "ENABLED in public subnets without a NAT gateway, to reach AWS APIs",
    },
}


def _given(parameter: str) -> dict[str, Any]:
    return {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}


# The condition names every parameter the service cannot do without, so that a linter resolving
# them knows the empty defaults never reach a resource; the rule makes a forgotten one an error
# of the deployment rather than a stack without its coordinator.
CONDITIONS = {
    ON_FARGATE: {
        "Fn::And": [_given(p) for p in ("CoordinatorImage", "CoordinatorVpc", "CoordinatorSubnets")]
    },
    SERVES_HTTPS: {
        "Fn::And": [
            {"Condition": ON_FARGATE},
            _given("CoordinatorTlsCertificate"),
            _given("CoordinatorTlsKey"),
        ]
    },
}
RULES = {
    "FargateCoordinatorIsComplete": {
        "RuleCondition": _given("CoordinatorImage"),
        "Assertions": [
            {
                "Assert": {"Fn::Equals": [{"Ref": "CoordinatorService"}, ECS_TASKS]},
                "AssertDescription": f"A Fargate coordinator needs CoordinatorService={ECS_TASKS}",
            },
            {
                "Assert": _given("CoordinatorVpc"),
                "AssertDescription": "A Fargate coordinator needs CoordinatorVpc",
            },
            {
                "Assert": _given("CoordinatorSubnets"),
                "AssertDescription": "A Fargate coordinator needs CoordinatorSubnets",
            },
        ],
    },
    # Half a pair would be refused by the coordinator at start, in a restart loop; refuse it here.
    "CoordinatorTlsIsAPair": {
        "RuleCondition": {
            "Fn::Or": [_given("CoordinatorTlsCertificate"), _given("CoordinatorTlsKey")]
        },
        "Assertions": [
            {
                "Assert": {
                    "Fn::And": [_given("CoordinatorTlsCertificate"), _given("CoordinatorTlsKey")]
                },
                "AssertDescription": "CoordinatorTlsCertificate and CoordinatorTlsKey go together",
            }
        ],
    },
}

LOG_GROUP_WAIVERS = (
    (
        "CKV_AWS_158",
        f"The log group is {_hardening.CUSTOMER_KEY}; the coordinator logs ids and outcomes, "
        "never payloads or tokens.",
    ),
)


def environment(stack: StackDescription) -> list[dict[str, Any]]:
    """What configures a task: the stack's name (every table, queue and bucket name follows from
    it) and where each secret is, read by the process at start with the coordinator role."""
    settings = stack.settings
    variables: dict[str, Any] = {
        "TPF_STACK": settings.stack,
        "TPF_SUBSTRATE": "aws",
        "TPF_PROFILE": settings.profile,
        "TPF_REGION": {"Ref": "AWS::Region"},
        "TPF_API_HOST": "0.0.0.0",  # the task's own interface; the security group decides who
        "TPF_API_PORT": str(API_PORT),
        "TPF_SIGNING_KEY": _secrets.reference(_secrets.SIGNING_KEY),
        "TPF_CONTROL_PLANE_TOKEN": _secrets.reference(_secrets.CONTROL_PLANE_TOKEN),
        "TPF_ADMIN_TOKEN": _secrets.reference(_secrets.ADMIN_TOKEN),
    }
    return [{"Name": name, "Value": value} for name, value in variables.items()]


def tls_environment() -> list[dict[str, Any]]:
    """The certificate and key, by reference, when the deployer gave them (else no variable)."""
    return [
        {
            "Fn::If": [
                SERVES_HTTPS,
                {"Name": name, "Value": {"Fn::Sub": f"secretsmanager:${{{parameter}}}"}},
                {"Ref": "AWS::NoValue"},
            ]
        }
        for name, parameter in (
            ("TPF_TLS_CERTIFICATE", "CoordinatorTlsCertificate"),
            ("TPF_TLS_KEY", "CoordinatorTlsKey"),
        )
    ]


def tls_grant(task_role: str) -> dict[str, Any]:
    """The coordinator role's read of the deployer's two TLS secrets, attached only with them."""
    statement = {
        "Sid": "ReadTlsSecrets",
        "Effect": "Allow",
        "Action": list(iam.SECRET_READ),
        "Resource": [{"Ref": "CoordinatorTlsCertificate"}, {"Ref": "CoordinatorTlsKey"}],
    }
    return {
        "Type": "AWS::IAM::Policy",
        "Condition": SERVES_HTTPS,
        "Properties": {
            "PolicyName": "tls-secrets",
            "Roles": [{"Ref": task_role}],
            "PolicyDocument": {"Version": iam.POLICY_VERSION, "Statement": [statement]},
        },
    }


def resources(
    stack: StackDescription,
    tags: list[dict[str, str]],
    *,
    task_role: str,
    log_retention_days: int,
) -> dict[str, Any]:
    """The Fargate service and what it needs; ``task_role`` is the coordinator role's id."""
    name = stack.physical("coordinator")
    conditional = {"Condition": ON_FARGATE}
    container = {
        "Name": CONTAINER,
        "Image": {"Ref": "CoordinatorImage"},
        "Essential": True,
        "PortMappings": [{"ContainerPort": API_PORT, "Protocol": "tcp"}],
        "Environment": environment(stack) + tls_environment(),
        "HealthCheck": {
            "Command": HEALTH_CHECK,
            "Interval": 15,
            "Timeout": 5,
            "Retries": 3,
            "StartPeriod": 60,
        },
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": {"Ref": LOG_GROUP},
                "awslogs-region": {"Ref": "AWS::Region"},
                "awslogs-stream-prefix": CONTAINER,
            },
        },
        # Nothing is written but TLS material, briefly, to /tmp: the rest of the image is fixed.
        "ReadonlyRootFilesystem": True,
        "MountPoints": [{"SourceVolume": "tmp", "ContainerPath": "/tmp"}],
        "Privileged": False,
        "StopTimeout": STOP_TIMEOUT_S,
    }
    return {
        CLUSTER: {
            "Type": "AWS::ECS::Cluster",
            **conditional,
            "Properties": {
                "ClusterName": name,
                "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
                "Tags": tags,
            },
        },
        LOG_GROUP: _hardening.waived(
            {
                "Type": "AWS::Logs::LogGroup",
                **conditional,
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {
                    "LogGroupName": f"/ecs/{name}",
                    "RetentionInDays": log_retention_days,
                    "Tags": tags,
                },
            },
            LOG_GROUP_WAIVERS,
        ),
        EXECUTION_ROLE: {
            **iam.coordinator_task_execution_role(stack, log_group=LOG_GROUP),
            **conditional,
        },
        SECURITY_GROUP: {
            "Type": "AWS::EC2::SecurityGroup",
            **conditional,
            "Properties": {
                "GroupDescription": f"Coordinator tasks of tpf stack {stack.settings.stack}",
                "VpcId": {"Ref": "CoordinatorVpc"},
                "SecurityGroupIngress": [
                    {
                        "Description": "The coordinator's API, from its clients",
                        "IpProtocol": "tcp",
                        "FromPort": API_PORT,
                        "ToPort": API_PORT,
                        "CidrIp": {"Ref": "CoordinatorClientCidr"},
                    }
                ],
                "SecurityGroupEgress": [
                    {
                        "Description": "AWS APIs (DynamoDB, SQS, S3, Secrets Manager, ECR)",
                        "IpProtocol": "tcp",
                        "FromPort": HTTPS_PORT,
                        "ToPort": HTTPS_PORT,
                        "CidrIp": "0.0.0.0/0",
                    }
                ],
                "Tags": tags,
            },
        },
        TLS_GRANT: tls_grant(task_role),
        TASK_DEFINITION: {
            "Type": "AWS::ECS::TaskDefinition",
            **conditional,
            "Properties": {
                "Family": name,
                "RequiresCompatibilities": ["FARGATE"],
                "NetworkMode": "awsvpc",
                "Cpu": CPU_UNITS,
                "Memory": MEMORY_MB,
                "RuntimePlatform": {
                    "OperatingSystemFamily": "LINUX",
                    "CpuArchitecture": "X86_64",
                },
                "TaskRoleArn": iam.arn(task_role),
                "ExecutionRoleArn": iam.arn(EXECUTION_ROLE),
                "Volumes": [{"Name": "tmp"}],
                "ContainerDefinitions": [container],
                "Tags": tags,
            },
        },
        SERVICE: {
            "Type": "AWS::ECS::Service",
            **conditional,
            "Properties": {
                "ServiceName": name,
                "Cluster": {"Ref": CLUSTER},
                "LaunchType": "FARGATE",
                "TaskDefinition": {"Ref": TASK_DEFINITION},
                "DesiredCount": REPLICAS,
                # One replica keeps serving while the other is replaced.
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 50,
                    "MaximumPercent": 200,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "AssignPublicIp": {"Ref": "CoordinatorPublicIp"},
                        "Subnets": {"Fn::Split": [",", {"Ref": "CoordinatorSubnets"}]},
                        "SecurityGroups": [{"Ref": SECURITY_GROUP}],
                    }
                },
                "PropagateTags": "SERVICE",
                "EnableECSManagedTags": True,
                # Naming the grant makes the service wait for it (only when there is one): a
                # task that started before it could not read its certificate.
                "Tags": [
                    *tags,
                    {
                        "Key": "tpf:tls-grant",
                        "Value": {"Fn::If": [SERVES_HTTPS, {"Ref": TLS_GRANT}, "none"]},
                    },
                ],
            },
        },
    }


def outputs() -> dict[str, Any]:
    def output(description: str, value: Any) -> dict[str, Any]:
        return {"Description": description, "Value": value, "Condition": ON_FARGATE}

    return {
        "CoordinatorClusterName": output("ECS cluster of the coordinator", {"Ref": CLUSTER}),
        "CoordinatorFargateServiceName": output(
            "ECS service running the coordinator", {"Fn::GetAtt": [SERVICE, "Name"]}
        ),
        "CoordinatorLogGroupName": output("Logs of the coordinator tasks", {"Ref": LOG_GROUP}),
        "CoordinatorSecurityGroupId": output(
            "Security group of the coordinator tasks", {"Ref": SECURITY_GROUP}
        ),
    }
