"""Settings shared by every service. Each service has one pydantic-settings class that extends
`CommonSettings`, is validated at start-up and is passed down through constructors."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMEM_", extra="ignore")

    log_level: str = "INFO"
    # None: JSON logs unless stderr is a terminal.
    json_logs: bool | None = None
