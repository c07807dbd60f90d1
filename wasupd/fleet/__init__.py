"""A fleet of wasupd hosts on one PostgreSQL: leases decide which host runs which session.

`placement` (pure) shares sessions out by headroom; `keeper` holds this host's leases:
claims, renewals, hand-overs, and the local deadline that stops a session before its lease
can expire when the database cannot be reached. The SQL lives in `wasupd.store.fleet`.
"""
