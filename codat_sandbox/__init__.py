"""A Codat-compatible sandbox server: the Platform API shapes over real HTTP, a seeded world, a settable
clock, Codat-like rate limits and injectable faults. Imports nothing from Prefect.

    from codat_sandbox import SandboxConfig, running_sandbox

    with running_sandbox(SandboxConfig(api_key="k", companies=20)) as sandbox:
        httpx.get(f"{sandbox.base_url}/companies", headers=sandbox.auth_header)
"""

from codat_sandbox.app import create_app
from codat_sandbox.config import SandboxConfig
from codat_sandbox.runner import SandboxHandle, running_sandbox, serve

__all__ = ["SandboxConfig", "SandboxHandle", "create_app", "running_sandbox", "serve"]
