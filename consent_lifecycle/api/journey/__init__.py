"""The hosted consent journey: pages a customer opens from a signed link to confirm, manage and revoke, and
the API call (`POST /v1/companies/{company_id}/journey-links`) a product makes that link with.

`router` carries both; `create_app` includes it.
"""

from fastapi import APIRouter

from consent_lifecycle.api.journey import links_api, pages

router = APIRouter()
router.include_router(links_api.router)
router.include_router(pages.router)

__all__ = ["router"]
