"""The hosted consent journey: pages a customer opens from a signed link to confirm, manage and revoke.

`router` carries the pages (`pages`); the app includes it (`app.include_router(journey.router)`).
"""

from consent_lifecycle.api.journey.pages import router

__all__ = ["router"]
