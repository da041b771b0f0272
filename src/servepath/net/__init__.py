"""Primitives every probe and the service share: endpoints (IPv6 in brackets, ``host:port``
parsing), address classes, the ICMP codec. Pure; nothing here opens a socket."""
