"""SSM Parameter Store: the provider's SsmHook reads; this one also writes, versions and deletes."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.ssm import SsmHook


class SsmParameterHook(SsmHook):
    """Parameters with their versions; values are always read decrypted, never logged.

    :param aws_conn_id: the AWS connection.
    """

    def get_parameter_state(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """Value (decrypted), type and version of ``name`` (or of one version of it), or None when missing."""
        try:
            found = self.conn.get_parameter(Name=f"{name}:{version}" if version else name, WithDecryption=True)
        except self.conn.exceptions.ParameterNotFound:
            return None
        except self.conn.exceptions.ParameterVersionNotFound:
            return None
        p = found["Parameter"]
        return {"value": p["Value"], "type": p["Type"], "version": p["Version"]}

    def put_parameter(self, name: str, value: str, secure: bool, key_id: str | None) -> int:
        """Write a new version of ``name``; return its version number."""
        kwargs: dict[str, Any] = {"Name": name, "Value": value, "Overwrite": True}
        kwargs["Type"] = "SecureString" if secure else "String"
        if secure and key_id:
            kwargs["KeyId"] = key_id
        return self.conn.put_parameter(**kwargs)["Version"]

    def delete_parameter(self, name: str) -> bool:
        """Delete ``name``; False when it did not exist."""
        try:
            self.conn.delete_parameter(Name=name)
        except self.conn.exceptions.ParameterNotFound:
            return False
        return True


def kms_key_exists(aws_conn_id: str, key_id: str) -> bool:
    """Whether the KMS key (id, ARN or alias) SecureString parameters are encrypted with exists."""
    kms = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="kms").conn
    try:
        kms.describe_key(KeyId=key_id)
    except kms.exceptions.NotFoundException:
        return False
    return True
