"""A stack deployed from the CloudFormation template: the environment its processes need, read
from the stack's outputs.

The coordinator, poller workers and operators' ``tpf`` commands are configured the same way:
``TPF_SUBSTRATE=aws``, the stack's name and region, and ``secretsmanager:`` references to the
signing key and the two API tokens, never their values. Everything else a process needs
(every table, queue and bucket) follows from the stack's name. ``tpf infra env`` prints this
environment as ``export`` lines; the deploy-and-run test starts its processes from it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from botocore.exceptions import BotoCoreError, ClientError

from tpf.errors import ConfigurationError
from tpf.settings import Settings
from tpf.substrate import sync_client

VARIABLES = {
    "Stack": "TPF_STACK",
    "Region": "TPF_REGION",
    "SigningKeyReference": "TPF_SIGNING_KEY",
    "ControlPlaneTokenReference": "TPF_CONTROL_PLANE_TOKEN",
    "AdminTokenReference": "TPF_ADMIN_TOKEN",
}
"""Output of the template -> the setting it is (each output's description names it too)."""


def environment(outputs: Mapping[str, str]) -> dict[str, str]:
    """The ``TPF_*`` variables of a process that runs against the stack with these outputs."""
    missing = [key for key in VARIABLES if key not in outputs]
    if missing:
        raise ConfigurationError(
            f"the stack has no output {', '.join(missing)}: was it deployed from "
            "`tpf infra template`?"
        )
    return {"TPF_SUBSTRATE": "aws", **{name: outputs[key] for key, name in VARIABLES.items()}}


def stack_outputs(settings: Settings, stack_name: str) -> dict[str, str]:
    """The outputs of the CloudFormation stack ``stack_name`` (DescribeStacks)."""
    cloudformation = sync_client(settings, "cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise ConfigurationError(
            f"cannot describe CloudFormation stack {stack_name}: {exc}"
        ) from exc
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def export_lines(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines a shell can ``eval``."""
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())
