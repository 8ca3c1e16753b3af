"""Settings come from the environment; production refuses the development shortcuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings

PRODUCTION = {
    "CHILDLINK_ENV": "production",
    "DATABASE_URL": "postgresql://childlink@db.internal:5432/childlink",
    "CHILDLINK_KEY_DIR": "/run/secrets/childlink-keys",
    "CHILDLINK_ISSUER": "https://childlink.sichuan.example",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PRODUCTION, "CHILDLINK_TRUSTED_ISSUERS", "CHILDLINK_TOKEN_LIFETIME_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class TestProductionSettings:
    def test_a_complete_production_environment_is_accepted(self, env: pytest.MonkeyPatch) -> None:
        for name, value in PRODUCTION.items():
            env.setenv(name, value)
        settings = Settings()
        assert not settings.is_development
        assert settings.resolved_key_dir == Path("/run/secrets/childlink-keys")

    @pytest.mark.parametrize(
        ("unset", "complaint"),
        [
            ("DATABASE_URL", "DATABASE_URL"),
            ("CHILDLINK_KEY_DIR", "CHILDLINK_KEY_DIR"),
            ("CHILDLINK_ISSUER", "CHILDLINK_ISSUER"),
        ],
    )
    def test_a_development_default_is_refused(
        self, env: pytest.MonkeyPatch, unset: str, complaint: str
    ) -> None:
        for name, value in PRODUCTION.items():
            if name != unset:
                env.setenv(name, value)
        with pytest.raises(ValidationError, match=complaint):
            Settings()

    def test_plain_http_issuer_or_jwks_is_refused(self, env: pytest.MonkeyPatch) -> None:
        for name, value in PRODUCTION.items():
            env.setenv(name, value)
        env.setenv("CHILDLINK_ISSUER", "http://childlink.sichuan.example")
        with pytest.raises(ValidationError, match="https"):
            Settings()
        env.setenv("CHILDLINK_ISSUER", PRODUCTION["CHILDLINK_ISSUER"])
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", "https://idp.example|http://idp.example/jwks")
        with pytest.raises(ValidationError, match="https"):
            Settings()


class TestLimits:
    @pytest.mark.parametrize(
        ("field", "value"),
        [("token_lifetime_seconds", 3600), ("clock_leeway_seconds", 300), ("client_status_ttl_seconds", 30)],
        ids=["lifetime_over_15_minutes", "leeway_over_60_s", "revocation_lag_over_5_s"],
    )
    def test_security_bounds_cannot_be_configured_away(
        self, env: pytest.MonkeyPatch, field: str, value: int
    ) -> None:
        with pytest.raises(ValidationError, match=field):
            Settings(**{field: value})

    def test_trusted_issuers_are_read_from_a_comma_separated_variable(self, env: pytest.MonkeyPatch) -> None:
        env.setenv(
            "CHILDLINK_TRUSTED_ISSUERS",
            "https://idp.a.example|https://idp.a.example/jwks, https://idp.b.example|https://b.example/keys",
        )
        assert Settings().external_issuers == {
            "https://idp.a.example": "https://idp.a.example/jwks",
            "https://idp.b.example": "https://b.example/keys",
        }

    def test_a_malformed_trusted_issuer_is_refused(self, env: pytest.MonkeyPatch) -> None:
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", "https://idp.a.example")
        with pytest.raises(ValidationError, match="issuer"):
            Settings()
