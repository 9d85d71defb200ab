"""The environment of a deployed stack's processes, from its CloudFormation outputs."""

from __future__ import annotations

import shlex

import pytest

from infra.template import stack_template
from tpf.errors import ConfigurationError
from tpf.settings import Settings
from tpfctl.deployed import VARIABLES, environment, export_lines

OUTPUTS = {
    "Stack": "tpf",
    "Region": "eu-west-1",
    "SigningKeyReference": "secretsmanager:arn:aws:secretsmanager:eu-west-1:1:secret:k",
    "ControlPlaneTokenReference": "secretsmanager:arn:aws:secretsmanager:eu-west-1:1:secret:c",
    "AdminTokenReference": "secretsmanager:arn:aws:secretsmanager:eu-west-1:1:secret:a",
    "ExecutionsTableName": "tpf-executions",
}


def test_every_output_that_names_a_setting_becomes_that_setting() -> None:
    template = stack_template(
        Settings(stack="tpf", profile="default"), pipelines={"org.example.orders": "o:o"}
    )
    named = {
        key: output["Description"].split()[0]
        for key, output in template["Outputs"].items()
        if output["Description"].startswith("TPF_")
    }
    assert named == VARIABLES


def test_the_environment_is_the_aws_substrate_and_references_never_values() -> None:
    assert environment(OUTPUTS) == {
        "TPF_SUBSTRATE": "aws",
        "TPF_STACK": "tpf",
        "TPF_REGION": "eu-west-1",
        "TPF_SIGNING_KEY": OUTPUTS["SigningKeyReference"],
        "TPF_CONTROL_PLANE_TOKEN": OUTPUTS["ControlPlaneTokenReference"],
        "TPF_ADMIN_TOKEN": OUTPUTS["AdminTokenReference"],
    }


def test_a_stack_without_the_template_s_outputs_is_refused_naming_them() -> None:
    with pytest.raises(ConfigurationError, match="SigningKeyReference, AdminTokenReference"):
        environment({k: v for k, v in OUTPUTS.items() if not k.startswith(("Sign", "Admin"))})


def test_export_lines_give_a_shell_back_each_value() -> None:
    env = {"TPF_STACK": "tpf", "ODD": "a b'c$d"}
    lines = export_lines(env).splitlines()
    assert [shlex.split(line) for line in lines] == [["export", f"{k}={v}"] for k, v in env.items()]
