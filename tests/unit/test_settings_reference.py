"""The settings reference in docs/ is generated from the settings classes and must not drift from them."""

from __future__ import annotations

from parley_devtools.settings_reference import PAGE, main, render


def test_the_committed_settings_reference_matches_the_code() -> None:
    assert PAGE.read_text() == render(), "run: .venv/bin/python -m parley_devtools.settings_reference"
    assert main(["--check"]) == 0


def test_every_service_lists_its_own_settings() -> None:
    page = render()
    for variable in (
        "`PARLEY_WEBHOOK_URL`",  # ingest
        "`PARLEY_JOB_DEADLINE_SECONDS`",  # job-watcher
        "`PARLEY_CONVERSATIONS_IN_FLIGHT`",  # insight-fetcher
        "`PARLEY_ENGINE_DATA_DIR`",  # engine
        "`PARLEY_KAFKA__SASL_MECHANISM`",  # nested, shared
    ):
        assert variable in page
