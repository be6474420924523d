"""Request bodies, checked the way the spec describes them; a bad body is a 400 naming each problem."""

from __future__ import annotations

import re
import uuid
from typing import Any

from codat_sandbox.clock import parse_iso
from codat_sandbox.codat_types import CONNECTION_STATUSES, DATA_TYPES
from codat_sandbox.errors import ApiError
from codat_sandbox.platforms import BY_KEY

_NAME_FORBIDDEN = re.compile(r"[^A-Za-z0-9\s\-',&@.?!]")
_PLATFORM_KEY = re.compile(r"^[a-z]{4}$")


def _bad(problems: list[tuple[str, str]], message: str = "The request body is not valid.") -> ApiError:
    return ApiError(
        400,
        message + " " + "; ".join(f"{item}: {text}" for item, text in problems),
        errors=problems,
        validator="RequestBodyValidator",
    )


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad([("body", "must be a JSON object")])
    return body


def tags_value(value: Any, problems: list[tuple[str, str]]) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(("tags", "must be an object of string values"))
        return None
    if len(value) > 10:
        problems.append(("tags", "at most 10 tags are allowed"))
    for key, tag in value.items():
        if not 1 <= len(key) <= 27:
            problems.append((f"tags.{key}", "tag keys must be 1 to 27 characters long"))
        if not isinstance(tag, str) or len(tag) > 100:
            problems.append((f"tags.{key}", "tag values must be strings of at most 100 characters"))
    return value


def company_body(body: Any, *, partial: bool = False) -> dict[str, Any]:
    """`{name, description, tags}` for create/replace (name required) or update (all optional).

    Characters the name pattern forbids are removed, as Codat does; a name left empty is an error.
    """
    data = _object(body)
    problems: list[tuple[str, str]] = []
    out: dict[str, Any] = {}
    unknown = sorted(set(data) - {"name", "description", "tags"})
    for key in unknown:
        problems.append((key, "is not a property of a company request"))
    name = data.get("name")
    if name is None:
        if not partial:
            problems.append(("name", "is required"))
    elif not isinstance(name, str):
        problems.append(("name", "must be a string"))
    else:
        cleaned = _NAME_FORBIDDEN.sub("", name).strip()
        if not cleaned:
            problems.append(
                ("name", "must contain at least one allowed character (letters, digits, spaces, -',&@.?!)")
            )
        out["name"] = cleaned
    if "description" in data:
        description = data["description"]
        if description is not None and not isinstance(description, str):
            problems.append(("description", "must be a string"))
        out["description"] = description
    if "tags" in data:
        out["tags"] = tags_value(data["tags"], problems)
    if problems:
        raise _bad(problems)
    return out


def platform_key(body: Any) -> str:
    data = _object(body)
    key = data.get("platformKey")
    if not isinstance(key, str) or not _PLATFORM_KEY.match(key):
        raise _bad([("platformKey", "is required: a 4-letter lower-case platform key, e.g. gbol")])
    if key not in BY_KEY:
        raise ApiError(
            400,
            f"Integration with key '{key}' is not available.",
            errors=[("platformKey", f"unknown platform key {key!r}; known: {', '.join(sorted(BY_KEY))}")],
            validator="RequestBodyValidator",
        )
    return key


def unlink_status(body: Any) -> str:
    data = _object(body)
    problems = [
        (key, "is not a property of an update-connection request") for key in sorted(set(data) - {"status"})
    ]
    status = data.get("status")
    if status not in CONNECTION_STATUSES:
        problems.append(("status", f"must be one of {', '.join(CONNECTION_STATUSES)}"))
    elif status != "Unlinked":
        problems.append(("status", "only 'Unlinked' can be set through this endpoint"))
    if problems:
        raise _bad(problems)
    return status


_SETTING_INTS = ("syncSchedule", "syncOrder", "syncFromWindow", "monthsToSync")
_SETTING_BOOLS = ("fetchOnFirstLink", "isLocked")
_SETTING_KEYS = {"dataType", "syncFromUtc", *_SETTING_INTS, *_SETTING_BOOLS}


def sync_settings_body(body: Any, company_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The settings list and overridesDefaults of a set-company-syncSettings body."""
    data = _object(body)
    problems: list[tuple[str, str]] = []
    for key in ("companyId", "settings", "overridesDefaults"):
        if key not in data:
            problems.append((key, "is required"))
    body_company = data.get("companyId")
    if "companyId" in data:
        try:
            same = str(uuid.UUID(str(body_company))) == company_id
        except ValueError:
            same = False
            problems.append(("companyId", "must be a uuid"))
        else:
            if not same:
                problems.append(("companyId", "must equal the companyId in the path"))
    overrides = data.get("overridesDefaults")
    if "overridesDefaults" in data and not isinstance(overrides, bool):
        problems.append(("overridesDefaults", "must be a boolean"))
    settings = data.get("settings")
    cleaned: list[dict[str, Any]] = []
    if "settings" in data and not isinstance(settings, list):
        problems.append(("settings", "must be an array of sync settings"))
    elif isinstance(settings, list):
        seen: set[str] = set()
        for index, setting in enumerate(settings):
            where = f"settings[{index}]"
            if not isinstance(setting, dict):
                problems.append((where, "must be an object"))
                continue
            for key in sorted(set(setting) - _SETTING_KEYS):
                problems.append((f"{where}.{key}", "is not a property of a sync setting"))
            for key in ("dataType", "fetchOnFirstLink", "syncSchedule", "syncOrder"):
                if key not in setting:
                    problems.append((f"{where}.{key}", "is required"))
            data_type = setting.get("dataType")
            if "dataType" in setting:
                if data_type not in DATA_TYPES:
                    problems.append((f"{where}.dataType", f"{data_type!r} is not a Codat data type"))
                elif data_type in seen:
                    problems.append((f"{where}.dataType", f"{data_type!r} appears more than once"))
                else:
                    seen.add(data_type)
            for key in _SETTING_INTS:
                if key in setting and (isinstance(setting[key], bool) or not isinstance(setting[key], int)):
                    problems.append((f"{where}.{key}", "must be an integer"))
            for key in _SETTING_BOOLS:
                if key in setting and not isinstance(setting[key], bool):
                    problems.append((f"{where}.{key}", "must be a boolean"))
            if "syncFromUtc" in setting and setting["syncFromUtc"] is not None:
                try:
                    parse_iso(setting["syncFromUtc"])
                except (ValueError, TypeError):
                    problems.append((f"{where}.syncFromUtc", "must be an ISO 8601 date or time"))
            cleaned.append(
                {
                    key: setting[key]
                    for key in (
                        "dataType",
                        "fetchOnFirstLink",
                        "syncSchedule",
                        "syncOrder",
                        "syncFromUtc",
                        "syncFromWindow",
                        "monthsToSync",
                        "isLocked",
                    )
                    if key in setting
                }
            )
    if problems:
        raise _bad(problems)
    return cleaned, bool(overrides)
