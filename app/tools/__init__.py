"""Tool specs and pure tool logic: patches, path confinement, test-run model."""
