"""`servepath load`: open- and closed-loop load with honest percentiles and a replica estimate.

Modules: ``schedule`` (intended send times, durations), ``payloads``, ``histogram`` (HDR),
``capacity`` (SLOs, replica estimates, the Universal Scalability Law), ``recorder`` and
``report`` (results), ``generator`` (the aiohttp engine), ``plot``, ``locust``.
"""
