"""The rules engine: YAML rules turning readings into graded faults (issue 5; not built yet)."""
