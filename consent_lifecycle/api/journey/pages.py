"""The journey's pages: server-rendered HTML a customer reaches from a signed link; forms work without JavaScript.

- GET  /journey/companies/{company_id}                             manage: consents, connections, expiry
- GET  /journey/companies/{company_id}/consents/{product}          confirm: what sharing with a product means
- POST /journey/companies/{company_id}/consents/{product}          records the grant or extension (channel ui)
- GET  /journey/companies/{company_id}/consents/{product}/revoke   the impact of revoking, asked again
- POST /journey/companies/{company_id}/consents/{product}/revoke   records the revocation (channel ui)
- POST /journey/companies/{company_id}/connections/{connection_id}/reconfirm   Open Banking reconfirmation

Every page needs `token` (a link from `links.make_link`) for the company in its path; a product's link opens
only that product's confirm page. Every POST needs the CSRF cookie and form token (`csrf`), and answers 303
back to a page with a short confirmation. Refusals are pages too (403 link or form, 404, 409/422 ledger),
and none shows anything of a company the link was not made for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from consent_lifecycle.api.journey import csrf
from consent_lifecycle.api.journey.links import Link, LinkError, verify
from consent_lifecycle.api.journey.views import (
    CompanyFacts,
    company_facts,
    confirm_plan,
    connection_rows,
    consent_rows,
    covers,
    impact_sentences,
    ordered,
    platform_names,
)
from consent_lifecycle.api.problems import status_of
from consent_lifecycle.catalog import Catalog, CatalogError, UnknownProductError
from consent_lifecycle.clock import utcnow
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.ledger import ConsentError

router = APIRouter(prefix="/journey", include_in_schema=False)

ENV = Environment(loader=PackageLoader("consent_lifecycle.api.journey", "templates"), autoescape=select_autoescape())
#: the link's token rides in the URL: no Referer to Codat, no caching, no framing, no script
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
#: the confirmation a page shows after a POST redirected to it (`done=`): fixed texts, nothing echoed
DONE = {
    "granted": "Thank you: your consent is recorded.",
    "extended": "Thank you: you now share the additional data.",
    "unchanged": "Nothing to add: you already share everything this product needs.",
    "reconfirmed": "Thank you: you reconfirmed your bank connection's consent.",
    "revoked": "Your consent is withdrawn. We stop using this data now.",
}
ACTOR = "customer"
DEFAULT_REASON = "withdrawn by the customer in the consent journey"
MAX_FORM_BYTES = 64 * 1024


class Refused(Exception):
    """A page that says no: `status`, a heading and a sentence."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def wording(catalog: Catalog) -> str:
    """The wording version a consent records: the catalog the customer read (as the CLI records it)."""
    return f"catalog-{catalog.version}"


def page(route: Callable[..., Response]) -> Callable[..., Response]:
    """Render what a route refuses as a readable page, never a 500 or a JSON problem."""

    @functools.wraps(route)
    def wrapper(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return route(request, *args, **kwargs)
        except LinkError as error:
            return refusal(request, Refused(403, "This link cannot be used", f"{error}. Ask for a new link."))
        except UnknownProductError as error:
            return refusal(request, Refused(404, "No such product", str(error)))
        except ConsentError as error:
            return refusal(request, Refused(status_of(error), "That could not be done", str(error)))
        except CatalogError as error:
            return refusal(request, Refused(status_of(error), "That could not be done", str(error)))
        except Refused as error:
            return refusal(request, error)

    return wrapper


def render(request: Request, template: str, status: int = 200, token: str = "", **context: Any) -> HTMLResponse:
    """`template` with the CSRF form token of this browser and link; sets the browser's cookie if it has none."""
    cookie = request.cookies.get(csrf.COOKIE) or csrf.new_cookie()
    form = csrf.form_token(request.app.state.secret, cookie, token) if token else ""
    html = ENV.get_template(template).render(token=token, csrf=form, url_for=request.url_for, **context)
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if csrf.COOKIE not in request.cookies:
        response.set_cookie(
            csrf.COOKIE, cookie, httponly=True, samesite="strict", path=csrf.COOKIE_PATH,
            secure=request.url.scheme == "https",
        )
    return response


def refusal(request: Request, error: Refused) -> HTMLResponse:
    return render(request, "refused.html", error.status, title=error.title, reason=error.message)


async def form_fields(request: Request) -> dict[str, list[str]]:
    """A urlencoded form's fields (each a list); empty for anything else, or a body over MAX_FORM_BYTES."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if kind != "application/x-www-form-urlencoded" or len(body) > MAX_FORM_BYTES:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


Form = Annotated[dict[str, list[str]], Depends(form_fields)]


def first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def opened(request: Request, token: str, company_id: str, product: str | None = None) -> Link:
    """The link `token`, for this company and (a product's link) this product; else Refused/LinkError."""
    link = verify(request.app.state.secret, token, company_id, utcnow())
    if link.product is not None and link.product != product:
        raise Refused(403, "This link cannot be used here", "This link is for one product's confirmation only.")
    return link


def posted(request: Request, form: dict[str, list[str]], company_id: str, product: str | None = None) -> str:
    """A form POST's link token, once the link and the CSRF token check out."""
    token = first(form, "token")
    opened(request, token, company_id, product)
    if not csrf.valid(request.app.state.secret, request.cookies.get(csrf.COOKIE), token, first(form, "csrf")):
        raise Refused(403, "This form could not be verified",
                      "Open the page again from your link and retry, in the same browser.")
    return token


def facts_of(request: Request, company_id: str) -> CompanyFacts:
    facts = company_facts(request.app.state.engine, request.app.state.catalog, company_id, utcnow())
    if facts is None:
        raise Refused(404, "Business not found", "We have no record of this business.")
    return facts


def back(request: Request, name: str, token: str, done: str, **path: str) -> RedirectResponse:
    url = request.url_for(name, **path).include_query_params(token=token, done=done)
    return RedirectResponse(str(url), status_code=303, headers=HEADERS)


def consent_of(request: Request, company_id: str, product: str) -> Any:
    consents = request.app.state.ledger.consents(company_id)
    return next((c for c in consents if c.product == product), None)


@router.get("/companies/{company_id}", name="journey_manage")
@page
def manage(request: Request, company_id: str, token: str = "", done: str = "") -> Response:
    opened(request, token, company_id)
    catalog = request.app.state.catalog
    facts = facts_of(request, company_id)
    consents = request.app.state.ledger.consents(company_id)
    return render(
        request, "manage.html", token=token, company=facts, message=DONE.get(done),
        consents=consent_rows(catalog, consents, facts), connections=connection_rows(facts),
    )


@router.get("/companies/{company_id}/consents/{product}", name="journey_confirm")
@page
def confirm_page(request: Request, company_id: str, product: str, token: str = "", done: str = "") -> Response:
    link = opened(request, token, company_id, product)
    catalog = request.app.state.catalog
    spec = catalog.product(product)
    facts = facts_of(request, company_id)
    consent = consent_of(request, company_id, product)
    plan = confirm_plan(spec, consent, facts.connections)
    shared = set(consent.data_types) if consent is not None and consent.status == "active" else set()
    carried = shared | set(plan.data_types)
    chosen = facts.connections[facts.connections["id"].isin(plan.connections)]
    connections = [
        {**row, "data_types": [catalog.describe(t).name for t in ordered(carried)
                               if DATA_TYPE_SOURCE[t] == row["source_type"]]}
        for row in chosen.to_dict("records")
    ]
    return render(
        request, "confirm.html", token=token, company=facts, product=spec, plan=plan,
        data_types=[catalog.describe(t) for t in plan.data_types],
        optional=[catalog.describe(t) for t in plan.optional],
        shared=[catalog.describe(t) for t in ordered(shared)], connections=connections,
        wording=wording(catalog), message=DONE.get(done), manage=link.product is None,
    )


@router.post("/companies/{company_id}/consents/{product}", name="journey_confirm_post")
@page
def confirm(request: Request, company_id: str, product: str, form: Form) -> Response:
    token = posted(request, form, company_id, product)
    catalog, ledger = request.app.state.catalog, request.app.state.ledger
    catalog.product(product)
    if first(form, "wording_version") != wording(catalog):
        raise Refused(409, "What you are agreeing to has changed",
                      "Open the page again to read the current wording before you confirm.")
    data_types, connections = form.get("data_type", []), form.get("connection", [])
    who = {"actor": ACTOR, "channel": "ui", "at": utcnow()}
    action = first(form, "action")
    if action == "extend" and not data_types and not connections:  # no optional type ticked, nothing else new
        done = "unchanged"
    elif action in ("grant", "extend") and covers(consent_of(request, company_id, product), data_types, connections):
        done = "granted" if action == "grant" else "extended"  # the same form sent twice (a double click)
    elif action == "grant" and data_types and connections:
        ledger.grant(company_id, product, data_types=data_types, connections=connections,
                     wording_version=wording(catalog), **who)
        done = "granted"
    elif action == "extend" and (data_types or connections):
        ledger.extend(company_id, product, data_types=data_types or None, connections=connections or None,
                      wording_version=wording(catalog), **who)
        done = "extended"
    else:
        raise Refused(422, "Nothing to confirm",
                      f"The form named no data to share (action {action!r}); open the page again.")
    return back(request, "journey_confirm", token, done, company_id=company_id, product=product)


@router.get("/companies/{company_id}/consents/{product}/revoke", name="journey_revoke")
@page
def revoke_page(request: Request, company_id: str, product: str, token: str = "") -> Response:
    opened(request, token, company_id)
    catalog = request.app.state.catalog
    spec = catalog.product(product)
    facts = facts_of(request, company_id)
    impact = request.app.state.ledger.impact_of_revoke(company_id, product, utcnow())
    sentences = impact_sentences(catalog, impact, platform_names(facts))
    manage_url = request.url_for("journey_manage", company_id=company_id).include_query_params(token=token)
    return render(request, "revoke.html", token=token, company=facts, product=spec, sentences=sentences,
                  manage_url=manage_url)


@router.post("/companies/{company_id}/consents/{product}/revoke", name="journey_revoke_post")
@page
def revoke(request: Request, company_id: str, product: str, form: Form) -> Response:
    token = posted(request, form, company_id)
    request.app.state.catalog.product(product)
    reason = " ".join(first(form, "reason").split())[:500] or DEFAULT_REASON
    current = consent_of(request, company_id, product)
    if current is not None and current.status == "revoked":  # the same form sent twice (a double click)
        return back(request, "journey_manage", token, "revoked", company_id=company_id)
    request.app.state.ledger.revoke(company_id, product, reason=reason, actor=ACTOR, channel="ui", at=utcnow())
    return back(request, "journey_manage", token, "revoked", company_id=company_id)


@router.post("/companies/{company_id}/connections/{connection_id}/reconfirm", name="journey_reconfirm")
@page
def reconfirm(request: Request, company_id: str, connection_id: str, form: Form) -> Response:
    token = posted(request, form, company_id)
    ledger = request.app.state.ledger
    using = [c.product for c in ledger.consents(company_id) if c.status == "active" and connection_id in c.connections]
    if not using:
        raise Refused(409, "Nothing to reconfirm", "No product you share data with uses this connection.")
    for product in using:  # each product's consent to it stands, and its expiry clock restarts
        ledger.reconfirm(company_id, product, actor=ACTOR, channel="ui", at=utcnow())
    return back(request, "journey_manage", token, "reconfirmed", company_id=company_id)
