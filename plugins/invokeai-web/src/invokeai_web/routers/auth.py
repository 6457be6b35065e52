"""Signing the web UI in to a server with an access token (see `invokeai_web.auth`).

`GET /auth` says whether a token is needed and whether this request has it; `POST /auth/login`
checks a token and sets the session cookie; `POST /auth/logout` clears it. These three answer
without a token (the guard lets them through), and a wrong token costs the caller half a second.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from invokeai_web.auth import COOKIE_MAX_AGE, COOKIE_NAME, authenticated, cookie_value
from invokeai_web.dependencies import SettingsDep

router = APIRouter(prefix="/auth", tags=["app"])

FAILED_LOGIN_DELAY = 0.5


class AuthStatus(BaseModel):
    required: bool = Field(description="Whether this server needs an access token")
    authenticated: bool = Field(description="Whether this request carries it (header or session cookie)")


class Login(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="The server's access token")


@router.get("", response_model=AuthStatus, summary="Whether a token is needed, and whether we have it")
def auth_status(request: Request, settings: SettingsDep) -> AuthStatus:
    ok = authenticated(
        settings.access_token,
        authorization=request.headers.get("authorization"),
        cookie=request.headers.get("cookie"),
    )
    return AuthStatus(required=bool(settings.access_token), authenticated=ok)


@router.post("/login", status_code=204, summary="Sign in with the access token (sets the session cookie)")
async def login(body: Login, request: Request, settings: SettingsDep) -> Response:
    """401 for a wrong token. On success the `invokeai_session` cookie (HttpOnly, SameSite=Strict,
    7 days) signs in every later request from this browser, images and Socket.IO included."""
    expected = settings.access_token
    if not expected:
        return Response(status_code=204)  # nothing to sign in to
    if not hmac.compare_digest(body.token.encode(), expected.encode()):
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        raise HTTPException(401, "wrong access token", headers={"WWW-Authenticate": "Bearer"})
    out = Response(status_code=204)
    out.set_cookie(
        COOKIE_NAME,
        cookie_value(expected),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return out


@router.post("/logout", status_code=204, summary="Sign out (clears the session cookie)")
def logout() -> Response:
    out = Response(status_code=204)
    out.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return out
