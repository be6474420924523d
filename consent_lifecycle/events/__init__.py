"""Codat events from the inbox: parsed into frames (`parse`), decided (`decide`), claimed and applied
(`inbox`, `store`). Pure functions over DataFrames apart from `inbox` and `store`."""
