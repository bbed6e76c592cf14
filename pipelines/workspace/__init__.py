"""The workspace's files: the only code that opens them (mount), leases, manifests, failure records."""
