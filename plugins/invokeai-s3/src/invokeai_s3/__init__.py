"""invokeai-s3: the `images` service on Amazon S3 or any S3-compatible object store.

Select it with `services.images = "s3"` and a `[plugins.s3]` table in invokeai.toml. Importing this
package (or its entry point, `invokeai_s3.hooks`) imports neither boto3 nor botocore: they load only
when the configuration selects this store (`invokeai_s3.storage`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invokeai-s3")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
