"""The ASGI application: routes, schemas, middleware, path echo, metrics."""
