"""The Codat Platform API routes the sandbox serves (shapes from the spec, bodies encoded here)."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from codat_sandbox.errors import ApiError
from codat_sandbox.paging import page_body, parse_paging
from codat_sandbox.webhooks import ConsumerRegistry
from codat_sandbox.world import World

router = APIRouter()


def world(request: Request) -> World:
    w: World = request.app.state.sandbox.world
    w.settle()
    return w


def json_response(content: bytes | str | dict | list, status_code: int = 200) -> Response:
    if isinstance(content, dict | list):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    return Response(content=content, status_code=status_code, media_type="application/json")


def parse_json(raw: bytes) -> Any:
    """`json.loads`, where what Python's parser takes but the sandbox cannot use is a ValueError like any
    other bad JSON: a body nested past the parser's depth (a RecursionError), and a string with a lone
    surrogate (`"\\ud800"`: no character, so it cannot be stored or sent back)."""
    try:
        data = json.loads(raw)
        json.dumps(data, ensure_ascii=False).encode()
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError("a lone surrogate (\\ud800 to \\udfff) in a string") from None
    return data


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "The request body is missing.", errors=[("body", "a JSON body is required")])
    try:
        return parse_json(raw)
    except ValueError as exc:
        raise ApiError(
            400, f"The request body is not valid JSON: {exc}", errors=[("body", "not valid JSON")]
        ) from None


# -- companies ---------------------------------------------------------------------------------------------


@router.get("/companies")
async def list_companies(request: Request) -> Response:
    paging = parse_paging(request.query_params, extra=("tags",))
    total, docs = world(request).list_companies(paging, request.query_params.get("tags") or None)
    return json_response(page_body("/companies", paging, total, docs))


@router.post("/companies")
async def create_company(request: Request) -> Response:
    body = await json_body(request)
    return json_response(world(request).create_company(body))


@router.get("/companies/{companyId}")
async def get_company(request: Request, companyId: str) -> Response:
    return json_response(world(request).company_json(companyId))


@router.put("/companies/{companyId}")
async def replace_company(request: Request, companyId: str) -> Response:
    w = world(request)
    w.company(companyId)
    return json_response(w.change_company(companyId, await json_body(request), replace=True))


@router.patch("/companies/{companyId}")
async def update_company(request: Request, companyId: str) -> Response:
    w = world(request)
    w.company(companyId)
    return json_response(w.change_company(companyId, await json_body(request), replace=False))


@router.delete("/companies/{companyId}")
async def delete_company(request: Request, companyId: str) -> Response:
    world(request).delete_company(companyId)
    return Response(status_code=204)


# -- connections -------------------------------------------------------------------------------------------


@router.get("/companies/{companyId}/connections")
async def list_connections(request: Request, companyId: str) -> Response:
    paging = parse_paging(request.query_params)
    w = world(request)
    total, docs = w.list_connections(companyId, paging)
    company_id = w.company(companyId)["id"]
    return json_response(page_body(f"/companies/{company_id}/connections", paging, total, docs))


@router.post("/companies/{companyId}/connections")
async def create_connection(request: Request, companyId: str) -> Response:
    w = world(request)
    w.company(companyId)
    return json_response(w.create_connection(companyId, await json_body(request)))


@router.get("/companies/{companyId}/connections/{connectionId}")
async def get_connection(request: Request, companyId: str, connectionId: str) -> Response:
    return json_response(world(request).connection_json(companyId, connectionId))


@router.patch("/companies/{companyId}/connections/{connectionId}")
async def unlink_connection(request: Request, companyId: str, connectionId: str) -> Response:
    w = world(request)
    w.connection(companyId, connectionId)
    return json_response(w.unlink_connection(companyId, connectionId, await json_body(request)))


@router.delete("/companies/{companyId}/connections/{connectionId}")
async def delete_connection(request: Request, companyId: str, connectionId: str) -> Response:
    world(request).delete_connection(companyId, connectionId)
    return Response(status_code=200)


# -- sync settings, data status, refresh, pull history ----------------------------------------------------


@router.get("/companies/{companyId}/syncSettings")
async def get_company_sync_settings(request: Request, companyId: str) -> Response:
    return json_response(world(request).sync_settings(companyId))


@router.post("/companies/{companyId}/syncSettings")
async def set_company_sync_settings(request: Request, companyId: str) -> Response:
    w = world(request)
    w.company(companyId)
    w.set_sync_settings(companyId, await json_body(request))
    return Response(status_code=204)


@router.get("/companies/{companyId}/dataStatus")
async def get_company_data_status(request: Request, companyId: str) -> Response:
    return json_response(world(request).data_status(companyId))


@router.post("/companies/{companyId}/data/all")
async def refresh_company_data(request: Request, companyId: str) -> Response:
    world(request).refresh_all(companyId)
    return Response(status_code=204)


@router.post("/companies/{companyId}/data/queue/{dataType}")
async def refresh_data_type(request: Request, companyId: str, dataType: str) -> Response:
    connection_id = request.query_params.get("connectionId") or None
    return json_response(world(request).queue_data_type(companyId, dataType, connection_id))


@router.get("/companies/{companyId}/data/history")
async def list_pull_operations(request: Request, companyId: str) -> Response:
    paging = parse_paging(request.query_params)
    w = world(request)
    total, docs = w.list_pulls(companyId, paging)
    company_id = w.company(companyId)["id"]
    return json_response(page_body(f"/companies/{company_id}/data/history", paging, total, docs))


@router.get("/companies/{companyId}/data/history/{datasetId}")
async def get_pull_operation(request: Request, companyId: str, datasetId: str) -> Response:
    return json_response(world(request).pull(companyId, datasetId))


# -- products ---------------------------------------------------------------------------------------------

PRODUCT_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _product(productIdentifier: str) -> str:
    if not PRODUCT_IDENTIFIER.fullmatch(productIdentifier):
        raise ApiError(
            400,
            f"'{productIdentifier}' is not a product identifier.",
            errors=[("productIdentifier", "lower-case letters, digits and hyphens, e.g. lending")],
            validator="ProductValidator",
        )
    return productIdentifier


@router.put("/companies/{companyId}/products/{productIdentifier}")
async def add_product(request: Request, companyId: str, productIdentifier: str) -> Response:
    w = world(request)
    w.company(companyId)
    w.change_product(companyId, _product(productIdentifier), add=True)
    return Response(status_code=204)


@router.delete("/companies/{companyId}/products/{productIdentifier}")
async def remove_product(request: Request, companyId: str, productIdentifier: str) -> Response:
    w = world(request)
    w.company(companyId)
    w.change_product(companyId, _product(productIdentifier), add=False)
    return Response(status_code=204)


# -- webhook consumers ------------------------------------------------------------------------------------


def consumers(request: Request) -> ConsumerRegistry:
    return request.app.state.sandbox.consumers


@router.get("/webhooks")
async def list_webhook_consumers(request: Request) -> Response:
    paging = parse_paging(request.query_params)
    docs = [json.dumps(c.doc()) for c in consumers(request).all()]
    return json_response(
        page_body("/webhooks", paging, len(docs), docs[paging.offset : paging.offset + paging.page_size])
    )


@router.post("/webhooks")
async def create_webhook_consumer(request: Request) -> Response:
    consumer = consumers(request).create(await json_body(request))
    return json_response(consumer.doc(), status_code=201)


@router.delete("/webhooks/{webhookId}")
async def delete_webhook_consumer(request: Request, webhookId: str) -> Response:
    consumers(request).delete(webhookId)
    return Response(status_code=204)


#: Codat routes the sandbox serves beyond the Platform spec (the fuzzer's spec check skips them)
extensions = APIRouter()


@extensions.get("/webhooks/{webhookId}")
async def get_webhook_consumer(request: Request, webhookId: str) -> Response:
    return json_response(consumers(request).get(webhookId).doc())
