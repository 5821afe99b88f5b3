"""ECR over the Amazon provider's AwsBaseHook: whether the new cluster's images are in the registry."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


class EcrImageHook(AwsBaseHook):
    """Look images up in ECR.

    :param aws_conn_id: the AWS connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "ecr"
        super().__init__(*args, **kwargs)

    def image_exists(self, image: str) -> bool:
        """Whether ``registry/repository:tag`` is in ECR (the registry part is not checked)."""
        repository, _, tag = image.split("/", 1)[-1].rpartition(":")
        try:
            self.conn.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except (self.conn.exceptions.ImageNotFoundException, self.conn.exceptions.RepositoryNotFoundException):
            return False
        return True
