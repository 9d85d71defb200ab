"""The stack's secrets, made by Secrets Manager when the stack is created.

The template carries no secret value, in a parameter or anywhere else: Secrets Manager generates
each one, the roles may read only the ones they use, and processes are configured with
``secretsmanager:<arn>`` references (``tpf.secret_references``) that they read once at start.
"""

from __future__ import annotations

from typing import Any

from infra._hardening import SECRET_WAIVERS, waived

SIGNING_KEY = "SigningKeySecret"
CONTROL_PLANE_TOKEN = "ControlPlaneTokenSecret"
ADMIN_TOKEN = "AdminTokenSecret"
LENGTH = 64
"""Characters of a generated secret: 64 letters and digits, about 380 bits."""

PURPOSES = {
    SIGNING_KEY: "HMAC key of commands and results (TPF_SIGNING_KEY)",
    CONTROL_PLANE_TOKEN: "Bearer token of the coordinator's control-plane API",
    ADMIN_TOKEN: "Bearer token of the coordinator's admin API",
}
WORKER_SECRETS = (SIGNING_KEY,)
COORDINATOR_SECRETS = (SIGNING_KEY, CONTROL_PLANE_TOKEN, ADMIN_TOKEN)


def reference(logical_id: str) -> dict[str, Any]:
    """The setting value that names a secret: ``secretsmanager:<arn>`` (a secret's Ref)."""
    return {"Fn::Sub": f"secretsmanager:${{{logical_id}}}"}


def resources(stack_name: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    # Deleted with the stack: what they protect (queued messages, the API) goes with it, and a
    # new stack makes new ones. Unnamed, so a re-created stack never meets a secret that is
    # still scheduled for deletion under the same name.
    return {
        logical_id: waived(
            {
                "Type": "AWS::SecretsManager::Secret",
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {
                    "Description": f"{purpose} of tpf stack {stack_name}",
                    "GenerateSecretString": {
                        "PasswordLength": LENGTH,
                        "ExcludePunctuation": True,
                    },
                    "Tags": tags,
                },
            },
            SECRET_WAIVERS,
        )
        for logical_id, purpose in PURPOSES.items()
    }
