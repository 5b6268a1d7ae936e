"""Who is calling: a static admin token, or tokens from a minimal Keystone v3 shim.

Tempest only authenticates through Keystone, so `/identity/v3` answers the three calls it
makes (version document, issue a token, validate a token) from a users file; the token
maps to a project and roles, which the API uses for project scoping. A static token
(`--token-file`) is what `openstack --os-auth-type admin_token` sends: it is admin.
Tokens live in memory; a restarted server asks clients to authenticate again (401).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ADMIN_PROJECT = "admin"


@dataclass(frozen=True)
class Context:
    project_id: str
    admin: bool
    user_id: str = ""
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class User:
    name: str
    password: str
    project: str
    roles: tuple[str, ...] = ("member",)

    @property
    def user_id(self) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"routeflow-user:{self.name}").hex

    @property
    def project_id(self) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"routeflow-project:{self.project}").hex


class UsersFileError(ValueError):
    pass


def load_users(path: str) -> list[User]:
    """`users: [{name, password, project, roles: [member]}]`; errors name the entry."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise UsersFileError(f"cannot read users file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsersFileError(f"users file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise UsersFileError(f"users file {path}: expected a mapping with a 'users' list")
    users = []
    for i, item in enumerate(data["users"]):
        where = f"users file {path}: users[{i}]"
        if not isinstance(item, dict):
            raise UsersFileError(f"{where}: expected a mapping")
        extra = set(item) - {"name", "password", "project", "roles"}
        if extra:
            raise UsersFileError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        for key in ("name", "password", "project"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise UsersFileError(f"{where}: '{key}' must be a non-empty string")
        roles = item.get("roles", ["member"])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise UsersFileError(f"{where}: 'roles' must be a list of strings")
        users.append(User(item["name"], item["password"], item["project"], tuple(roles)))
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise UsersFileError(f"users file {path}: duplicate user names")
    return users


@dataclass
class Auth:
    """Token checking. No static token and no users: open (every caller is admin)."""

    static_token: str | None = None
    users: list[User] = field(default_factory=list)
    tokens: dict[str, tuple[User, str]] = field(default_factory=dict)  # token -> (user, expiry)

    @property
    def open(self) -> bool:
        return self.static_token is None and not self.users

    def context(self, token: str | None) -> Context | None:
        if self.open:
            return Context(ADMIN_PROJECT, True)
        if token is None:
            return None
        if self.static_token is not None and hmac.compare_digest(
            token.encode(), self.static_token.encode()
        ):
            return Context(ADMIN_PROJECT, True)
        issued = self.tokens.get(token)
        if issued is None:
            return None
        user, _expiry = issued
        return Context(user.project_id, "admin" in user.roles, user.user_id, user.roles)

    def issue(self, name: str, password: str) -> tuple[str, User] | None:
        for user in self.users:
            if user.name == name and hmac.compare_digest(user.password.encode(), password.encode()):
                token = secrets.token_hex(16)
                expiry = (datetime.now(UTC) + timedelta(hours=12)).strftime(
                    "%Y-%m-%dT%H:%M:%S.000000Z"
                )
                self.tokens[token] = (user, expiry)
                return token, user
        return None


def _token_body(user: User, expiry: str, base: str) -> dict:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    domain = {"id": "default", "name": "Default"}
    return {
        "token": {
            "methods": ["password"],
            "expires_at": expiry,
            "issued_at": now,
            "audit_ids": [uuid.uuid4().hex[:22]],
            "user": {
                "id": user.user_id,
                "name": user.name,
                "domain": domain,
                "password_expires_at": None,
            },
            "project": {"id": user.project_id, "name": user.project, "domain": domain},
            "roles": [{"id": uuid.uuid5(uuid.NAMESPACE_URL, r).hex, "name": r} for r in user.roles],
            "is_domain": False,
            "catalog": [
                {
                    "type": "network",
                    "name": "neutron",
                    "id": "network",
                    "endpoints": [
                        {
                            "id": f"network-{i}",
                            "interface": i,
                            "region": "RegionOne",
                            "region_id": "RegionOne",
                            "url": base,
                        }
                        for i in ("public", "internal", "admin")
                    ],
                },
                {
                    "type": "identity",
                    "name": "keystone",
                    "id": "identity",
                    "endpoints": [
                        {
                            "id": f"identity-{i}",
                            "interface": i,
                            "region": "RegionOne",
                            "region_id": "RegionOne",
                            "url": f"{base}/identity/v3",
                        }
                        for i in ("public", "internal", "admin")
                    ],
                },
            ],
        }
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": status, "message": message, "title": "Unauthorized"}}, status_code=status
    )


def _password(body: Any) -> tuple[str, str] | None:
    try:
        user = body["auth"]["identity"]["password"]["user"]
    except (KeyError, TypeError):
        return None
    if not isinstance(user, Mapping):
        return None
    name, password = user.get("name"), user.get("password")
    if isinstance(name, str) and isinstance(password, str):
        return name, password
    return None


def identity_routes(app: FastAPI, auth: Auth) -> None:
    """Mount the Keystone v3 shim at /identity/v3."""

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def version_doc(request: Request) -> dict:
        return {
            "version": {
                "id": "v3.14",
                "status": "stable",
                "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{base(request)}/identity/v3/"}],
                "media-types": [
                    {
                        "base": "application/json",
                        "type": "application/vnd.openstack.identity-v3+json",
                    }
                ],
            }
        }

    @app.get("/identity")
    async def identity_versions(request: Request) -> dict:
        doc = version_doc(request)["version"]
        return {"versions": {"values": [doc]}}

    @app.get("/identity/v3")
    async def identity_v3(request: Request) -> dict:
        return version_doc(request)

    @app.post("/identity/v3/auth/tokens", status_code=201)
    async def issue_token(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Malformed request body: not JSON")
        creds = _password(body)
        if creds is None:
            return _error(401, "Only password authentication with a user name is supported")
        issued = auth.issue(*creds)
        if issued is None:
            return _error(401, "The request you have made requires authentication.")
        token, user = issued
        return JSONResponse(
            _token_body(user, auth.tokens[token][1], base(request)),
            status_code=201,
            headers={"X-Subject-Token": token},
        )

    @app.get("/identity/v3/auth/tokens")
    async def check_token(request: Request) -> JSONResponse:
        subject = request.headers.get("x-subject-token", "")
        caller = auth.context(request.headers.get("x-auth-token"))
        issued = auth.tokens.get(subject)
        if caller is None or issued is None:
            return _error(404 if caller is not None else 401, "Could not find token")
        user, expiry = issued
        return JSONResponse(
            _token_body(user, expiry, base(request)), headers={"X-Subject-Token": subject}
        )
