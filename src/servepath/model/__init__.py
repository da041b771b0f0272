"""Models: loading artifacts, their input schema and version, the example model, batching."""
