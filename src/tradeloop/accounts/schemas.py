"""Request and response bodies of the accounts API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


def password_problems(password: str) -> list[str]:
    """Every rule the password breaks, in words a user can act on."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if password and password.strip() == "":
        problems.append("must not be only spaces")
    return problems


def _check_password(password: str) -> str:
    problems = password_problems(password)
    if problems:
        raise ValueError("Password " + "; ".join(problems))
    return password


NewPassword = Annotated[str, AfterValidator(_check_password)]


class RegisterRequest(BaseModel):
    email: EmailStr
    password: NewPassword


class RegisterResponse(BaseModel):
    email: str
    message: str


class TokenRequest(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    name: str | None = Field(default=None, max_length=100,
                             description="A label to recognise the token by in the list")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenResponse(BaseModel):
    id: uuid.UUID
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_at: datetime


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    is_admin: bool
    confirmed_at: datetime | None
    inserted_at: datetime


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    context: str
    name: str | None
    inserted_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    current: bool = False


class TokenList(BaseModel):
    tokens: list[TokenRead]
    total: int
