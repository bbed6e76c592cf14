"""The engine core: one source through its pipelines (engine), whether a path runs (triage), pipeline
discovery (registry) and per-job scratch folders on local disk."""
