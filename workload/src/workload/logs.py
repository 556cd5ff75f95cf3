"""Logging shared by the commands and the server: the SDK loggers that are kept quiet. Standard library only
(the server's JSON log lines are `workload.serving.logs`)."""

from __future__ import annotations

# The AWS SDK logs every client's endpoint and credentials lookup at INFO: noise in every step's log.
SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
