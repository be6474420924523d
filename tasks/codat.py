"""Reads from Codat."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from consent_lifecycle.snapshot import Observation, observe
from tasks.resources import codat_client


@task(cache_policy=NO_CACHE)
async def count_company_pages(page_size: int) -> int:
    """How many pages of companies Codat holds at `page_size`: one request for a one-company page (its
    `totalResults` is the count), rather than downloading a whole page that the next task fetches again."""
    async with codat_client() as codat:
        first = await codat.get_companies_page(1, page_size=1)
    return -(-first.total_results // page_size)


def _pages_run_name() -> str:
    pages = task_run.parameters["pages"]
    return f"fetch-company-pages-{pages[0]}-{pages[-1]}"


@task(cache_policy=NO_CACHE, task_run_name=_pages_run_name)
async def fetch_company_pages(pages: list[int], page_size: int) -> Observation:
    """Companies, with their connections, on `pages`, fetched concurrently within the client's bound."""
    async with codat_client() as codat:
        fetched = await asyncio.gather(*(codat.get_companies_page(n, page_size=page_size) for n in pages))
    return replace(observe(company for page in fetched for company in page.results), codat_requests=codat.requests_sent)


@task(cache_policy=NO_CACHE)
async def fetch_companies(company_ids: list[str]) -> Observation:
    """Named companies, with their connections (one request each, concurrently)."""
    async with codat_client() as codat:
        companies = await asyncio.gather(*(codat.get_company(company_id) for company_id in company_ids))
    return replace(observe(companies), codat_requests=codat.requests_sent)
