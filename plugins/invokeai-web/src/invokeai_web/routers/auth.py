"""Signing the web UI in to a server with an access token (see `invokeai_web.auth`).

`GET /auth` says whether a token is needed and whether this request has it; `POST /auth/login`
checks a token and sets the session cookie; `POST /auth/logout` revokes and clears it. These three
answer without a token (the guard lets them through); a wrong token costs the caller half a second,
and counts toward its address's `auth_failures_per_minute` (429 past it).
"""

from __future__ import annotations

import asyncio
from math import ceil

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from invokeai_web.auth import COOKIE_MAX_AGE, COOKIE_NAME, Gate, client_address
from invokeai_web.dependencies import SettingsDep
from invokeai_web.security import too_many_failures

router = APIRouter(prefix="/auth", tags=["app"])

FAILED_LOGIN_DELAY = 0.5


class AuthStatus(BaseModel):
    required: bool = Field(description="Whether this server needs an access token")
    authenticated: bool = Field(description="Whether this request carries it (header or session cookie)")


class Login(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="The server's access token")


@router.get("", response_model=AuthStatus, summary="Whether a token is needed, and whether we have it")
def auth_status(request: Request, settings: SettingsDep) -> AuthStatus:
    ok, wait = _gate(request).check(
        client_address(request.scope),
        authorization=request.headers.get("authorization"),
        cookie=request.headers.get("cookie"),
    )
    if wait > 0:
        _throttled(wait)
    return AuthStatus(required=bool(settings.access_token), authenticated=ok)


def _gate(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


def _throttled(wait: float) -> None:
    raise HTTPException(429, too_many_failures(wait), headers={"Retry-After": str(ceil(wait))})


@router.post("/login", status_code=204, summary="Sign in with the access token (sets the session cookie)")
async def login(body: Login, request: Request, settings: SettingsDep) -> Response:
    """401 for a wrong token, 429 after too many. On success the `invokeai_session` cookie (HttpOnly,
    SameSite=Strict, 7 days) signs in every later request from this browser, images and Socket.IO
    included, until `POST /auth/logout`."""
    if not settings.access_token:
        return Response(status_code=204)  # nothing to sign in to
    gate = _gate(request)
    ok, wait = gate.check_token(client_address(request.scope), body.token)
    if wait > 0:
        _throttled(wait)
    if not ok:
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        raise HTTPException(401, "wrong access token", headers={"WWW-Authenticate": "Bearer"})
    out = Response(status_code=204)
    out.set_cookie(
        COOKIE_NAME,
        gate.new_cookie(),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return out


@router.post("/logout", status_code=204, summary="Sign out (revokes and clears the session cookie)")
def logout(request: Request) -> Response:
    """The cookie this request carries stops working, in this browser and wherever it was copied."""
    _gate(request).revoke(request.headers.get("cookie"))
    out = Response(status_code=204)
    out.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return out
