"""consent-lifecycle: keep the use of customers' Codat data inside what each customer consented to.

The core package holds every decision as plain functions over plain data or DataFrames. It imports
nothing from Prefect: flows/ and tasks/ wrap it.
"""

__version__ = "0.1.0"
