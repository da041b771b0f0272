"""Path probes: one module per probe, pure logic apart from the thin socket drivers."""
