"""The local stand: real services on loopback that a Ferry plan can migrate between.

Run it with ``PYTHONPATH=include python -m stand up|down|env|status|load``. Each service is one
module of ``stand.services`` listed in ``stand.services.SERVICES``.
"""
