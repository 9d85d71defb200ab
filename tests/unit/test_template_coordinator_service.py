"""The template's optional Fargate coordinator: absent unless an image is given, and then two
tasks of the coordinator role, configured by reference, healthy on ``/q/health/ready``, logging
to a log group of their own. (checkov scans these resources with the rest of the template, in
``test_template_scan``; it reads resources whatever their condition.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from infra import _coordinator_service as service
from infra._secrets import ADMIN_TOKEN, CONTROL_PLANE_TOKEN, SIGNING_KEY
from infra.resources import describe
from infra.template import COORDINATOR_ROLE, render, stack_template
from tests.unit.test_template import (
    ACCOUNT,
    HOSTED,
    ORDERS,
    PARAMETER_VALUES,
    PARTITION,
    REGION,
    STACK,
    Resolver,
    _policy,
)
from tpf.settings import Settings

ON_FARGATE = {
    **PARAMETER_VALUES,
    "CoordinatorTlsCertificate": "",
    "CoordinatorTlsKey": "",
    "CoordinatorImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tpf-coordinator:1.0.0",
    "CoordinatorVpc": "vpc-0123456789abcdef0",
    "CoordinatorSubnets": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
}
ADDED = (
    service.CLUSTER,
    service.LOG_GROUP,
    service.EXECUTION_ROLE,
    service.SECURITY_GROUP,
    service.TASK_DEFINITION,
    service.SERVICE,
    service.TLS_GRANT,
)
WITH_HTTPS = {
    **ON_FARGATE,
    "CoordinatorTlsCertificate": PARAMETER_VALUES["CoordinatorTlsCertificate"],
    "CoordinatorTlsKey": PARAMETER_VALUES["CoordinatorTlsKey"],
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    stack = describe(Settings(stack=STACK, profile="default"), releases=[(ORDERS, "1.0.0")])
    return stack_template(stack.settings, pipelines=HOSTED, release="1.0.0")


def _holds(condition: Any, parameters: dict[str, str]) -> bool:
    """The template's condition functions (the ones it uses) over parameter values."""
    ((function, argument),) = condition.items()
    if function == "Condition":
        return _holds(service.CONDITIONS[argument], parameters)
    if function == "Fn::And":
        return all(_holds(c, parameters) for c in argument)
    if function == "Fn::Or":
        return any(_holds(c, parameters) for c in argument)
    if function == "Fn::Not":
        return not _holds(argument[0], parameters)
    if function == "Fn::Equals":
        left, right = (_value(v, parameters) for v in argument)
        return bool(left == right)
    raise AssertionError(f"no evaluator for {function}")


def _value(value: Any, parameters: dict[str, str]) -> Any:
    return parameters[value["Ref"]] if isinstance(value, dict) else value


def _defaults(template: dict[str, Any]) -> dict[str, str]:
    given = {name: p["Default"] for name, p in template["Parameters"].items() if "Default" in p}
    return {**given, **PARAMETER_VALUES}


def _container(template: dict[str, Any]) -> dict[str, Any]:
    (container,) = template["Resources"][service.TASK_DEFINITION]["Properties"][
        "ContainerDefinitions"
    ]
    return container


def test_with_the_defaults_the_stack_has_no_coordinator_service(
    template: dict[str, Any],
) -> None:
    condition = template["Conditions"][service.ON_FARGATE]
    assert not _holds(condition, _defaults(template))
    assert _holds(condition, ON_FARGATE)
    for parameter in ("CoordinatorImage", "CoordinatorVpc", "CoordinatorSubnets"):
        assert not _holds(condition, {**ON_FARGATE, parameter: ""}), parameter
    assert not _holds(template["Conditions"][service.SERVES_HTTPS], _defaults(template))
    conditions = {service.ON_FARGATE, service.SERVES_HTTPS}
    conditional = {
        id_ for id_, r in template["Resources"].items() if r.get("Condition") in conditions
    }
    assert conditional == set(ADDED)
    for name in service.outputs():
        assert template["Outputs"][name]["Condition"] == service.ON_FARGATE


def test_an_incomplete_fargate_deployment_is_refused_by_a_rule(template: dict[str, Any]) -> None:
    rule = template["Rules"]["FargateCoordinatorIsComplete"]
    assert not _holds(rule["RuleCondition"], _defaults(template))
    assert _holds(rule["RuleCondition"], {**_defaults(template), "CoordinatorImage": "img"})
    assertions = [a["Assert"] for a in rule["Assertions"]]
    assert all(_holds(a, ON_FARGATE) for a in assertions)
    for broken in (
        {"CoordinatorVpc": ""},
        {"CoordinatorSubnets": ""},
        {"CoordinatorService": "ec2.amazonaws.com"},
    ):
        assert not all(_holds(a, {**ON_FARGATE, **broken}) for a in assertions), broken


def test_two_fargate_tasks_of_a_quarter_vcpu_run_as_the_coordinator_role(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    task = resources[service.TASK_DEFINITION]["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert (task["Cpu"], task["Memory"]) == ("256", "512")
    assert task["TaskRoleArn"] == {"Fn::GetAtt": [COORDINATOR_ROLE, "Arn"]}
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": [service.EXECUTION_ROLE, "Arn"]}
    run = resources[service.SERVICE]["Properties"]
    assert run["DesiredCount"] == 2
    assert run["LaunchType"] == "FARGATE"
    assert run["TaskDefinition"] == {"Ref": service.TASK_DEFINITION}
    assert run["DeploymentConfiguration"]["DeploymentCircuitBreaker"]["Rollback"] is True
    assert _container(template)["Image"] == {"Ref": "CoordinatorImage"}


def test_a_task_is_healthy_while_the_coordinator_answers_ready(template: dict[str, Any]) -> None:
    check = _container(template)["HealthCheck"]["Command"]
    assert check[0] == "CMD"
    assert f"127.0.0.1:{service.API_PORT}/q/health/ready" in check[-1]
    assert {"ContainerPort": service.API_PORT, "Protocol": "tcp"} in _container(template)[
        "PortMappings"
    ]


def test_the_tasks_log_to_their_own_log_group_with_a_retention(template: dict[str, Any]) -> None:
    logging = _container(template)["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert logging["Options"]["awslogs-group"] == {"Ref": service.LOG_GROUP}
    group = template["Resources"][service.LOG_GROUP]["Properties"]
    assert group["RetentionInDays"] > 0
    assert group["LogGroupName"] == f"/ecs/{STACK}-coordinator"


def test_the_task_environment_configures_the_coordinator_by_reference_only(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("TPF_")]:
        monkeypatch.delenv(name)
    resolve = Resolver(template)
    environment = {
        e["Name"]: resolve(e["Value"]) for e in _container(template)["Environment"] if "Name" in e
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    seen = Settings()

    assert (seen.stack, seen.region, seen.substrate) == (STACK, REGION, "aws")
    assert (seen.api_host, seen.api_port) == ("0.0.0.0", service.API_PORT)
    assert seen.signing_key == f"secretsmanager:{resolve.arn(SIGNING_KEY)}"
    assert seen.control_plane_token is not None and seen.admin_token is not None
    assert seen.control_plane_token.get_secret_value().startswith("secretsmanager:arn:")
    assert seen.admin_token.get_secret_value() == f"secretsmanager:{resolve.arn(ADMIN_TOKEN)}"
    assert CONTROL_PLANE_TOKEN in seen.control_plane_token.get_secret_value()
    # ECS's own secret injection would put values in the environment; the task has none.
    assert "Secrets" not in _container(template)


def test_the_execution_role_pulls_images_and_writes_the_task_logs_and_nothing_else(
    template: dict[str, Any],
) -> None:
    starter = _policy(template, service.EXECUTION_ROLE)
    image = f"arn:{PARTITION}:ecr:{REGION}:{ACCOUNT}:repository/tpf-coordinator"
    assert starter.allows("ecr:BatchGetImage", image)
    assert not starter.allows("ecr:PutImage", image)
    assert not starter.allows("ecr:BatchGetImage", image.replace(ACCOUNT, "210987654321"))
    group = Resolver(template).arn(service.LOG_GROUP).removesuffix(":*")
    assert starter.allows("logs:PutLogEvents", f"{group}:log-stream:coordinator/x")
    assert not starter.allows("logs:PutLogEvents", group.replace("coordinator", "worker"))
    secret = Resolver(template).arn(SIGNING_KEY)
    assert not starter.allows("secretsmanager:GetSecretValue", secret)


def test_the_security_group_opens_the_api_to_its_clients_and_only_https_out(
    template: dict[str, Any],
) -> None:
    group = template["Resources"][service.SECURITY_GROUP]["Properties"]
    (ingress,) = group["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (service.API_PORT, service.API_PORT)
    assert ingress["CidrIp"] == {"Ref": "CoordinatorClientCidr"}
    (egress,) = group["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)


def test_cfn_lint_finds_nothing_with_the_fargate_coordinator_on(
    template: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "stack.json"
    path.write_text(render(template))

    matches = lint_file(
        path,
        ManualArgs(include_checks=["I"], regions=["us-east-1", REGION], parameters=[ON_FARGATE]),
    )

    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []


def test_with_a_certificate_and_key_the_tasks_serve_https_and_may_read_just_those_secrets(
    template: dict[str, Any],
) -> None:
    serves_https = template["Conditions"][service.SERVES_HTTPS]
    assert _holds(serves_https, WITH_HTTPS)
    assert not _holds(serves_https, ON_FARGATE)
    resolve = Resolver(template)
    variables = {
        e["Fn::If"][1]["Name"]: resolve(e["Fn::If"][1]["Value"])
        for e in _container(template)["Environment"]
        if "Fn::If" in e
    }
    assert variables == {
        "TPF_TLS_CERTIFICATE": f"secretsmanager:{WITH_HTTPS['CoordinatorTlsCertificate']}",
        "TPF_TLS_KEY": f"secretsmanager:{WITH_HTTPS['CoordinatorTlsKey']}",
    }
    grant = template["Resources"][service.TLS_GRANT]["Properties"]
    assert grant["Roles"] == [{"Ref": COORDINATOR_ROLE}]
    (statement,) = grant["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["secretsmanager:GetSecretValue"]
    assert sorted(resolve(r) for r in statement["Resource"]) == sorted(
        WITH_HTTPS[p] for p in ("CoordinatorTlsCertificate", "CoordinatorTlsKey")
    )
    tags = template["Resources"][service.SERVICE]["Properties"]["Tags"]
    assert {
        "Key": "tpf:tls-grant",
        "Value": {"Fn::If": [service.SERVES_HTTPS, {"Ref": service.TLS_GRANT}, "none"]},
    } in tags


def test_half_a_tls_pair_is_refused_by_a_rule(template: dict[str, Any]) -> None:
    rule = template["Rules"]["CoordinatorTlsIsAPair"]
    assert not _holds(rule["RuleCondition"], ON_FARGATE)
    (assertion,) = rule["Assertions"]
    assert _holds(assertion["Assert"], WITH_HTTPS)
    for half in ("CoordinatorTlsCertificate", "CoordinatorTlsKey"):
        given = {**WITH_HTTPS, half: ""}
        assert _holds(rule["RuleCondition"], given)
        assert not _holds(assertion["Assert"], given)


def test_cfn_lint_finds_nothing_with_the_fargate_coordinator_serving_https(
    template: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "stack.json"
    path.write_text(render(template))

    matches = lint_file(
        path,
        ManualArgs(include_checks=["I"], regions=["us-east-1", REGION], parameters=[WITH_HTTPS]),
    )

    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []
