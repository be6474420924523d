"""Retention: delete what no remaining consent covers, once every covering product's retention is over.

`plan` decides what to delete and when (pure); `gate` decides whether a run may delete at all; `store`
keeps the deletion items and receipts; `execute` deletes one item under the company's lock; `purge`
removes a company's rows from the client's own tables.
"""
