"""Primitives the service, the client, load and every probe share: endpoints (IPv6 bracketing,
``host:port`` parsing), address classes, forwarded headers and the quoted strings they are made
of, the HTTP error map, proxy choice, this machine's interfaces, routes and listening sockets,
container detection, socket helpers and the ICMP codec.

Parsing and judging are pure; where a module reads the machine (``/proc``, psutil, a socket's
error queue) that reading is one small function. Nothing here imports from ``netdiag``,
``service`` or ``cli``.
"""
