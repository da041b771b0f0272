"""When a certificate's expiry is worth a warning: one threshold for `serve`'s banner, `tls`
and whoever else judges a certificate's dates. Pure."""

from __future__ import annotations

__all__ = ["EXPIRY_WARNING_DAYS", "expires_soon"]

#: Fewer days than this before a certificate expires, and every command warns.
EXPIRY_WARNING_DAYS = 14


def expires_soon(days_to_expiry: float) -> bool:
    """Valid still, but within :data:`EXPIRY_WARNING_DAYS` of its end."""
    return 0 <= days_to_expiry < EXPIRY_WARNING_DAYS
