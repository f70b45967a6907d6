"""docs/SETTINGS.md and docs/METRICS.md are generated from the code; stale docs fail here."""

import pytest

from scripts.gen_docs import DOCS, GENERATED


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_doc_is_up_to_date(name: str) -> None:
    assert (DOCS / name).read_text() == GENERATED[name](), f"run: python -m scripts.gen_docs ({name})"
