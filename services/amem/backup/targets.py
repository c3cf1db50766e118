"""Where backups live: a local directory, or a prefix in any S3-compatible bucket.

A target holds backups side by side, one folder (key prefix) per backup. Files are written
whole from local files (boto3's managed, multipart transfers for S3), so a backup never needs
its data in memory. S3 credentials, region and endpoint come from boto3's usual chain:
environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3` for MinIO, Ceph, ...),
shared config files, or the pod's IAM role (IRSA on EKS, Workload Identity's S3 interop on GKE).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class Target(Protocol):
    url: str

    def put(self, key: str, source: Path) -> None: ...

    def get(self, key: str, dest: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def folders(self) -> list[str]:
        """The names of the folders at the top of the target."""
        ...

    def remove_folder(self, name: str) -> None: ...


class LocalTarget:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def put(self, key: str, source: Path) -> None:
        dest = self.root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(dest)  # a reader never sees half a file

    def get(self, key: str, dest: Path) -> None:
        shutil.copyfile(self.root / key, dest)

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def folders(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def remove_folder(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)


class S3Target:
    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self._s3 = boto3.client("s3")

    def put(self, key: str, source: Path) -> None:
        self._s3.upload_file(str(source), self.bucket, self.prefix + key)

    def get(self, key: str, dest: Path) -> None:
        self._s3.download_file(self.bucket, self.prefix + key, str(dest))

    def exists(self, key: str) -> bool:
        reply = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + key, MaxKeys=1)
        return any(o["Key"] == self.prefix + key for o in reply.get("Contents", []))

    def folders(self) -> list[str]:
        names = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(self.prefix) :].rstrip("/"))
        return sorted(names)

    def remove_folder(self, name: str) -> None:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{name}/"
        )
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:  # a page holds at most 1000 keys, the most one delete call takes
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


def open_target(location: str) -> Target:
    """`s3://bucket/prefix` or a local path (`file://` optional)."""
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{location!r}: an S3 location needs a bucket, s3://bucket/prefix")
        return S3Target(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalTarget(Path(parsed.path))
    if parsed.scheme:
        raise ValueError(f"{location!r}: use s3://bucket/prefix or a local path")
    return LocalTarget(Path(location))
