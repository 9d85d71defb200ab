"""tpf: durable pipeline executions on DynamoDB, SQS and S3.

The shared package: the programming model and contract, wire envelopes, settings, substrate
clients and request accounting. Roles live next to it: ``coordinator`` (control plane),
``worker`` (data plane), ``infra`` (resources).
"""

__version__ = "0.1.0"
