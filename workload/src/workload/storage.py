"""Local paths and `s3://bucket/prefix` URIs behind one small API.

S3 goes through boto3, which honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3`, so the same code runs against
AWS and against a local moto server. Every S3 failure a user can act on (no credentials, no such bucket, no
such object, endpoint unreachable) becomes a one-line `WorkloadError`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from workload.errors import WorkloadError

S3_SCHEME = "s3://"
_HASH_CHUNK = 1 << 20


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> (`bucket`, `some/prefix`)."""
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise WorkloadError(f"not a valid S3 URI (no bucket): {uri}")
    return bucket, key.strip("/")


def join(uri: str, name: str) -> str:
    """Child `name` of a local folder or an S3 prefix."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        return f"{S3_SCHEME}{bucket}/{prefix}/{name}" if prefix else f"{S3_SCHEME}{bucket}/{name}"
    return str(Path(uri) / name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


@contextmanager
def s3_errors(uri: str) -> Iterator[None]:
    """Turn boto3's exceptions into a one-line WorkloadError that names the URI."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError as exc:
        raise WorkloadError(f"no AWS credentials found for {uri} (set AWS_PROFILE or AWS_ACCESS_KEY_ID)") from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            raise WorkloadError(f"no such S3 bucket: {uri}") from exc
        if code in ("NoSuchKey", "404", "NotFound"):
            raise WorkloadError(f"no such S3 object: {uri}") from exc
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise WorkloadError(f"access denied to {uri} ({code})") from exc
        raise WorkloadError(f"S3 request for {uri} failed: {code or exc}") from exc
    except BotoCoreError as exc:
        raise WorkloadError(f"S3 request for {uri} failed: {exc}") from exc


def list_names(uri: str) -> list[str]:
    """Names (relative paths) of the files under a local folder or an S3 prefix; empty if there are none."""
    return sorted(list_sizes(uri))


def list_sizes(uri: str) -> dict[str, int]:
    """Size in bytes of each file (by relative path) under a local folder or an S3 prefix, in one listing."""
    if not is_s3(uri):
        root = Path(uri)
        if not root.is_dir():
            return {}
        return {str(path.relative_to(root)): path.stat().st_size for path in root.rglob("*") if path.is_file()}
    bucket, prefix = split_s3(uri)
    base = f"{prefix}/" if prefix else ""
    sizes: dict[str, int] = {}
    with s3_errors(uri):
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
        for page in pages:
            sizes.update((item["Key"][len(base) :], item["Size"]) for item in page.get("Contents", []))
    return sizes


def download_file(uri: str, destination: Path) -> None:
    """Copy one object (or local file) to `destination`; the caller owns atomicity of the folder."""
    if not is_s3(uri):
        if not Path(uri).is_file():
            raise WorkloadError(f"no such file: {uri}")
        shutil.copyfile(uri, destination)
        return
    bucket, key = split_s3(uri)
    with s3_errors(uri):
        s3_client().download_file(bucket, key, str(destination))


def read_bytes(uri: str) -> bytes:
    if not is_s3(uri):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError as exc:
            raise WorkloadError(f"no such file: {uri}") from exc
    bucket, key = split_s3(uri)
    with s3_errors(uri):
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()


def write_bytes(uri: str, data: bytes, client: Any = None) -> None:
    """Write one object (or local file) whole: a local file appears by rename, never half-written.

    `client`: an S3 client to use instead of the default one (e.g. with shorter timeouts)."""
    if not is_s3(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            partial.write_bytes(data)
            partial.replace(path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise WorkloadError(f"cannot write {uri}: {exc.strerror or exc}") from exc
        return
    bucket, key = split_s3(uri)
    with s3_errors(uri):
        (client or s3_client()).put_object(Bucket=bucket, Key=key, Body=data)


def upload_file(path: Path, uri: str) -> None:
    bucket, key = split_s3(uri)
    with s3_errors(uri):
        s3_client().upload_file(str(path), bucket, key)


def delete_names(uri: str, names: list[str]) -> None:
    """Remove files under an S3 prefix, 1,000 keys a request."""
    bucket, prefix = split_s3(uri)
    keys = [{"Key": f"{prefix}/{name}" if prefix else name} for name in names]
    with s3_errors(uri):
        client = s3_client()
        for start in range(0, len(keys), 1000):
            answer = client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
            # DeleteObjects answers 200 even when it refuses keys (AccessDenied): the refusals are in "Errors".
            if refused := answer.get("Errors"):
                first = refused[0]
                raise WorkloadError(
                    f"S3 refused to delete {len(refused)} key(s) under {uri}, "
                    f"e.g. {first.get('Key')}: {first.get('Code', 'error')}"
                )


def publish_folder(local: Path, uri: str, *, last: str = "manifest.json", replace: bool = False) -> None:
    """Publish a finished local folder at `uri` so that readers never see it half-written.

    Local: the folder is renamed into place (it must be on the same file system, see `staging_dir`).
    S3: every file is uploaded with `last` (the manifest) uploaded after all others; on failure the
    uploaded files are removed again. With `replace`, an existing output is swapped out (its manifest goes
    first, so readers stop trusting it before anything changes).
    """
    if not is_s3(uri):
        target = Path(uri)
        if target.exists():
            if not replace:
                raise WorkloadError(f"refusing to overwrite existing {uri}")
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            try:
                local.rename(target)
            except OSError:
                old.rename(target)  # put the previous output back rather than leave nothing
                raise
            shutil.rmtree(old)
        else:
            local.rename(target)
        return
    existing = list_names(uri)
    if existing and not replace:
        raise WorkloadError(f"refusing to overwrite existing {uri}")
    if last in existing:
        delete_names(uri, [last])
    names = list_names(str(local))
    # Stale files go before the new manifest appears, so no reader sees it beside files it does not list.
    stale = sorted(set(existing) - set(names) - {last})
    if stale:
        delete_names(uri, stale)
    ordered = [name for name in names if name != last] + ([last] if last in names else [])
    uploaded: list[str] = []
    try:
        for name in ordered:
            upload_file(local / name, join(uri, name))
            uploaded.append(name)
    except BaseException:
        # Best effort: a role without s3:DeleteObject (the training instance's) must still see the upload's
        # own error; without a manifest, whatever stays behind is never trusted by a reader.
        with suppress(Exception):
            delete_names(uri, uploaded)
        raise
    shutil.rmtree(local)


@contextmanager
def staging_dir(uri: str) -> Iterator[Path]:
    """A temporary folder to build an output in: next to a local target (so a rename publishes it), or in
    the system temp dir for S3. Removed on failure; `publish_folder` consumes it on success."""
    if is_s3(uri):
        parent = Path(tempfile.gettempdir())
    else:
        parent = Path(uri).absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{Path(uri.rstrip('/')).name}.tmp-", dir=parent))
    path.chmod(0o755)  # mkdtemp makes it private; the published folder should read like any other
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path)
