"""The built-in pipelines, registered through entry points exactly as a third party's are."""
