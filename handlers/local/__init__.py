"""The local stack: a real S3 API and FUSE mount (SeaweedFS), the upload trigger, in-process invoke."""
