"""The model API: the server and its gate, the HTTP protocol, the data plane, the endpoint
families and the ASGI shell around them (docs/layout.md draws the floor plan)."""
