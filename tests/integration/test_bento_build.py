"""`bentoml build` from a clean checkout: one Bento, every model packed, a CUDA Dockerfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest
import yaml

pytestmark = pytest.mark.integration


def bento_yaml(home: Path, tag: str) -> dict:
    name, version = tag.split(":")
    return yaml.safe_load((home / "bentos" / name / version / "bento.yaml").read_text())


def test_bento_has_every_service_and_model(
    built_bento: tuple[Path, str], tiny_llm: str, classic_models
) -> None:
    home, tag = built_bento
    info = bento_yaml(home, tag)
    services = {s["name"]: s for s in info["services"]}
    assert info["entry_service"] == "inference_stack"
    assert set(services) == {"inference_stack", "llm", "embedding_cache", "classic_ml"}
    assert {d["service"] for d in services["inference_stack"]["dependencies"]} == {
        "llm", "embedding_cache", "classic_ml",
    }  # fmt: skip
    packed = {m["tag"] for s in info["services"] for m in s["models"]}
    assert tiny_llm in packed
    assert {str(m.tag) for m in classic_models.values()} <= packed
    assert services["llm"]["config"]["resources"] == {"gpu": 1}  # the Bento targets GPUs
    # Models are referenced by tag and copied in at containerize/export time: all must resolve offline.
    for model_tag in packed:
        assert bentoml.models.get(model_tag).path


def test_dockerfile_uses_a_cuda_base_image_and_installs_vllm(
    built_bento: tuple[Path, str], tmp_path: Path
) -> None:
    home, tag = built_bento
    dockerfile = tmp_path / "Dockerfile"
    code = f"import bentoml; bentoml.container.get_containerfile({tag!r}, output_path={str(dockerfile)!r})"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    text = dockerfile.read_text()
    assert "FROM nvidia/cuda:12.8.1" in text
    name, version = tag.split(":")
    requirements = (home / "bentos" / name / version / "env" / "python" / "requirements.txt").read_text()
    assert "vllm==0.26.0" in requirements


def test_make_containerfile_works_from_a_fresh_checkout(
    tmp_path: Path, tiny_llm: str, classic_models
) -> None:
    """The README's command in a copy of the checkout that holds only what a clone holds (no build/, no
    other ignored file): a missing `mkdir` once broke it for every new user. It reuses this venv and the
    shared model store instead of installing them again."""
    from scripts.procs import ROOT, shared_model_store

    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()  # fmt: skip
    checkout = tmp_path / "checkout"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    assert not (checkout / "build").exists()
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(shared_model_store())
    venv = Path(sys.executable).parents[1]
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run(
        ["make", "-o", f"{venv}/.installed", "containerfile", f"VENV={venv}"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FROM nvidia/cuda:12.8.1" in (checkout / "build" / "Dockerfile").read_text()
