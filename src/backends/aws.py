"""AWS plumbing for the SageMaker backend: sessions, retries, errors and S3 objects.

boto3 is imported inside the functions: pipelines that never use AWS do not pay for it.
Every AWS call the backend makes goes through `aws_errors`, so a failure reaches the
user as one `BackendError` saying what was attempted, what AWS answered and what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from backends.base import BackendError

# Throttling and transient server errors are retried by botocore with exponential
# backoff and jitter; "adaptive" also slows the client down while AWS throttles it.
RETRY_POLICY = {"max_attempts": 8, "mode": "adaptive"}

# What to tell the user for the errors they can fix themselves. AWS services spell
# some codes two ways.
_PERMISSION = (
    "the credentials in use lack this permission: check the IAM policy of the user or "
    "of `backend.assume_role`."
)
_INVALID = "the AWS credentials are not valid."
_EXPIRED = "the AWS session token has expired: refresh your credentials."
HINTS = {
    "AccessDenied": _PERMISSION,
    "AccessDeniedException": _PERMISSION,
    "UnrecognizedClientException": _INVALID,
    "InvalidClientTokenId": _INVALID,
    "ExpiredToken": _EXPIRED,
    "ExpiredTokenException": _EXPIRED,
    "ThrottlingException": "AWS kept throttling the requests after several retries with "
    "backoff: try again in a few minutes.",
    "ResourceLimitExceeded": "the account's SageMaker quota is reached: delete unused "
    "endpoints or request a quota increase.",
    "NoSuchBucket": "the bucket does not exist: create it, or fix the S3 URI in the config.",
}


def quiet_aws_loggers() -> None:
    """Keep boto's DEBUG logs (request headers with session tokens) out of any log.

    Pipelines may run with LOG_LEVEL=DEBUG; botocore would then print every signed
    request, credentials included.
    """
    for name in ("boto3", "botocore", "s3transfer", "urllib3"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def session(region: str, assume_role: str | None = None, session_name: str = "backend") -> Any:
    """A boto3 session in `region`; with `assume_role`, under that role's credentials."""
    import boto3

    quiet_aws_loggers()
    base = boto3.Session(region_name=region)
    if not assume_role:
        return base
    with aws_errors(f"Assuming role {assume_role}"):
        credentials = base.client("sts", config=client_config()).assume_role(
            RoleArn=assume_role,
            RoleSessionName=session_name[:64],  # STS limit
        )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=region,
    )


def client_config() -> Any:
    from botocore.config import Config

    return Config(retries=dict(RETRY_POLICY))


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore `ClientError`, else None."""
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn any botocore failure inside the block into one clear `BackendError`."""
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    try:
        yield
    except ClientError as error:
        code = error_code(error) or "Error"
        message = error.response.get("Error", {}).get("Message", str(error))
        hint = HINTS.get(code)
        raise BackendError(
            f"{action} failed: AWS answered {code}: {message}" + (f" ({hint})" if hint else "")
        ) from None
    except WaiterError as error:
        raise BackendError(f"{action} failed while waiting: {error.last_response}") from None
    except BotoCoreError as error:
        hint = ""
        if type(error).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            hint = " (configure credentials: `aws configure`, AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        raise BackendError(f"{action} failed: {error}{hint}") from None


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every object key under `prefix` (all pages)."""
    keys = []
    with aws_errors(f"Listing s3://{bucket}/{prefix}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def read_text(s3: Any, bucket: str, key: str) -> str:
    with aws_errors(f"Reading s3://{bucket}/{key}"):
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def write_text(s3: Any, bucket: str, key: str, text: str) -> None:
    with aws_errors(f"Writing s3://{bucket}/{key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
