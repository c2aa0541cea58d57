"""Settings of the provider double (prefix ``PARLEY_DOUBLE_``); the command line overrides them."""

from __future__ import annotations

from parley_shared.settings import DEVELOPMENT_APP_ID, DEVELOPMENT_APP_SECRET
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DoubleConfig(BaseSettings):
    """How the scripted provider behaves: credentials, job timing, scripted failures and webhook delivery."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_DOUBLE_", extra="ignore")

    port: int = Field(8790, ge=0, le=65535, description="TCP port on 127.0.0.1 (0 picks a free one)")
    app_id: str = Field(DEVELOPMENT_APP_ID, description="the only appId /oauth2/token:generate accepts")
    app_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_APP_SECRET), description="the only appSecret /oauth2/token:generate accepts"
    )
    scheduled_seconds: float = Field(0.5, ge=0, description="delay from submission to in_progress")
    processing_seconds: float = Field(
        1.0, ge=0, description="delay from in_progress to completed/failed; 0 and 0 is instant mode"
    )
    fail_marker: str = Field(
        "#fail", min_length=1, description="a job fails when its name, url or a message content contains this"
    )
    drop_webhooks: bool = Field(False, description="never call webhooks, so only polling can see completions")
    webhook_timeout_seconds: float = Field(2.0, gt=0, description="total timeout of one webhook POST")
    token_ttl_seconds: int = Field(86400, ge=1, description="lifetime of an issued access token")
