"""Settings come from the environment; production refuses the development shortcuts."""

from __future__ import annotations

import json
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
    for name in (
        *PRODUCTION,
        "CHILDLINK_TRUSTED_ISSUERS",
        "CHILDLINK_TRUSTED_ISSUERS_FILE",
        "CHILDLINK_TOKEN_LIFETIME_SECONDS",
    ):
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
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", _issuers(jwks_url="http://idp.example/jwks"))
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


POLICE_IDP = {
    "issuer": "https://idp.police.sichuan.example",
    "jwks_url": "https://idp.police.sichuan.example/jwks",
    "agencies": ["police"],
    "scopes": ["custody:read", "children:read"],
    "region": "51",
}


def _issuers(**changes: object) -> str:
    return json.dumps([{**POLICE_IDP, **changes}])


class TestTrustedIssuers:
    def test_each_issuer_is_read_with_its_trust_from_a_json_variable(self, env: pytest.MonkeyPatch) -> None:
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", _issuers())
        trust = Settings().external_issuers["https://idp.police.sichuan.example"]
        assert trust.agencies == {"police"}
        assert trust.scopes == {"custody:read", "children:read"}
        assert (trust.region, trust.allow_privileged) == ("51", False)

    def test_issuers_can_come_from_a_json_file(self, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        path = tmp_path / "issuers.json"
        path.write_text(_issuers(), encoding="utf-8")
        env.setenv("CHILDLINK_TRUSTED_ISSUERS_FILE", str(path))
        assert list(Settings().external_issuers) == ["https://idp.police.sichuan.example"]

    def test_the_old_pipe_form_is_refused_with_a_pointer_to_the_new_one(
        self, env: pytest.MonkeyPatch
    ) -> None:
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", "https://idp.a.example|https://idp.a.example/jwks")
        with pytest.raises(ValidationError, match=r"JSON list.*no longer accepted"):
            Settings()

    @pytest.mark.parametrize(
        ("changes", "complaint"),
        [
            ({"region": None}, "region"),
            ({"agencies": []}, "agencies"),
            ({"scopes": ["children:read", "no:such-scope"]}, "scopes"),
            ({"region": "51x"}, "region"),
            ({"agencies": ["Police Bureau"]}, "agency codes"),
            ({"jwks_url": "file:///etc/keys"}, "jwks_url"),
            ({"trust_everything": True}, "trust_everything"),
        ],
        ids=[
            "no_region",
            "no_agencies",
            "unknown_scope",
            "region_not_digits",
            "bad_agency",
            "not_http",
            "unknown_field",
        ],
    )
    def test_a_malformed_trust_is_refused_at_startup(
        self, env: pytest.MonkeyPatch, changes: dict[str, object], complaint: str
    ) -> None:
        issuer = {k: v for k, v in {**POLICE_IDP, **changes}.items() if v is not None}
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", json.dumps([issuer]))
        with pytest.raises(ValidationError, match=complaint):
            Settings()

    @pytest.mark.parametrize("scope", ["admin", "audit:read"])
    def test_listing_a_privileged_scope_without_the_opt_in_is_refused(
        self, env: pytest.MonkeyPatch, scope: str
    ) -> None:
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", _issuers(scopes=["children:read", scope]))
        with pytest.raises(ValidationError, match="allow_privileged"):
            Settings()
        env.setenv(
            "CHILDLINK_TRUSTED_ISSUERS", _issuers(scopes=["children:read", scope], allow_privileged=True)
        )
        assert scope in Settings().external_issuers[POLICE_IDP["issuer"]].scopes  # type: ignore[index]

    def test_an_unreadable_or_malformed_file_is_refused(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        env.setenv("CHILDLINK_TRUSTED_ISSUERS_FILE", str(tmp_path / "missing.json"))
        with pytest.raises(ValidationError, match="cannot be read"):
            Settings()
        broken = tmp_path / "broken.json"
        broken.write_text("{not json", encoding="utf-8")
        env.setenv("CHILDLINK_TRUSTED_ISSUERS_FILE", str(broken))
        with pytest.raises(ValidationError, match=r"broken\.json"):
            Settings()

    def test_the_same_issuer_twice_or_both_sources_are_refused(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", json.dumps([POLICE_IDP, POLICE_IDP]))
        with pytest.raises(ValidationError, match="once"):
            Settings()
        path = tmp_path / "issuers.json"
        path.write_text(_issuers(), encoding="utf-8")
        env.setenv("CHILDLINK_TRUSTED_ISSUERS", _issuers())
        env.setenv("CHILDLINK_TRUSTED_ISSUERS_FILE", str(path))
        with pytest.raises(ValidationError, match="not both"):
            Settings()
