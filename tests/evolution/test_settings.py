"""Evolution settings: secrets from files, backend selection."""

from __future__ import annotations

from amem.evolution.settings import EvolutionSettings, LLMBackendName


def test_llm_key_from_a_mounted_secret_file(tmp_path):
    (tmp_path / "amem_evolution_llm_api_key").write_text("sk-from-file")
    settings = EvolutionSettings(_secrets_dir=str(tmp_path))
    assert settings.llm_api_key.get_secret_value() == "sk-from-file"
    assert settings.resolved_backend() is LLMBackendName.OPENAI
    assert "sk-from-file" not in repr(settings)


def test_no_llm_configured_means_offline():
    assert EvolutionSettings().resolved_backend() is LLMBackendName.OFFLINE
    assert EvolutionSettings(llm_base_url="http://x/v1").resolved_backend() is LLMBackendName.OPENAI
