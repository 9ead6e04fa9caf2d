"""AWS credentials from the environment's variables, and the region used when none is given: one
home for both, shared by the S3 repository, the RDS instance and the ALB load balancer."""

from __future__ import annotations

from collections.abc import Mapping

from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import SecretStr

DEFAULT_REGION = "ap-south-1"      # the guide's (Mumbai)


def aws_credentials(variables: Mapping[str, str], endpoint_variable: str) -> AwsCredentials:
    """Given environment variables, return the credentials AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    AWS_REGION (default DEFAULT_REGION) describe, with the endpoint `endpoint_variable` names (an
    S3-compatible store, a test double) when set; unset keys leave boto3 its own chain (an instance role)."""
    def optional(name: str) -> str | None:
        return (variables.get(name) or "").strip() or None

    secret = optional("AWS_SECRET_ACCESS_KEY")
    return AwsCredentials(aws_access_key_id=optional("AWS_ACCESS_KEY_ID"),
                          aws_secret_access_key=SecretStr(secret) if secret else None,
                          region_name=optional("AWS_REGION") or DEFAULT_REGION,
                          aws_client_parameters=AwsClientParameters(endpoint_url=optional(endpoint_variable)))


def region_of(credentials: AwsCredentials) -> str:
    """The region `credentials` name, DEFAULT_REGION when they name none (a block saved in the UI)."""
    return credentials.region_name or DEFAULT_REGION
