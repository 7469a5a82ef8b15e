"""Lambda assets built without Docker.

- The code asset: the handler modules of `aws/lambda/` at the root, the `talkstack` package beside
  them (Python files only: no sample media, no model files). One asset shared by every function.
- Three dependency layers (`infra/cdk/layers/*.txt`), installed by pip for Lambda's platform
  (arm64, CPython of the runtime) from wheels only, so nothing compiles on the deploying machine.

CDK calls `try_bundle` at synth time; it always succeeds or raises, never falls back to Docker.
Asset hashes are computed from the inputs, so a synth that skips bundling (the tests) names the same
assets as one that bundles.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO = Path(__file__).resolve().parents[3]
LAMBDA_DIR = REPO / "aws" / "lambda"
PACKAGE_DIR = REPO / "talkstack"
LAYERS_DIR = REPO / "infra" / "cdk" / "layers"

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = "3.14"
# Amazon Linux 2023 (glibc 2.34) runs wheels built for any of these.
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
# Only used if local bundling were refused, which ours never does; CDK requires an image.
FALLBACK_IMAGE = DockerImage.from_registry(f"public.ecr.aws/sam/build-python{PYTHON_VERSION}")

LAYERS = ("base", "modal", "media", "provenance")


def code_files() -> list[tuple[Path, Path]]:
    """(source, path inside the asset) for every file of the code asset."""
    files = [(path, Path(path.name)) for path in sorted(LAMBDA_DIR.glob("*.py"))]
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files.append((path, Path("talkstack") / path.relative_to(PACKAGE_DIR)))
    # Data the handlers read at run time: the moderation policy the Moderate step loads by default,
    # and the bundled templates with their media and the sample portrait their presenters default to
    # (the API lists and generates them and copies the media into the input bucket).
    data = [
        *sorted((PACKAGE_DIR / "assets" / "policy").glob("*.json")),
        *sorted(p for p in (PACKAGE_DIR / "assets" / "templates").rglob("*") if p.is_file()),
        PACKAGE_DIR / "assets" / "samples" / "portrait.png",
    ]
    files += [(path, Path("talkstack") / path.relative_to(PACKAGE_DIR)) for path in data]
    return files


def _digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(hashlib.sha256(part).digest())
    return sha.hexdigest()


def code_hash() -> str:
    return _digest(*(str(target).encode() + src.read_bytes() for src, target in code_files()))


def layer_requirements(name: str) -> Path:
    return LAYERS_DIR / f"{name}.txt"


def layer_hash(name: str) -> str:
    return _digest(
        layer_requirements(name).read_bytes(), PYTHON_VERSION.encode(), " ".join(PLATFORMS).encode()
    )


def pip_command(requirements: Path, target: Path) -> list[str]:
    platform_args = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", PYTHON_VERSION, *platform_args,
        "--target", str(target), "--requirement", str(requirements),
    ]  # fmt: skip


@jsii.implements(ILocalBundling)
class CodeBundler:
    """Copies the handlers and the talkstack package into the asset folder."""

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:  # jsii passes options
        out = Path(output_dir)
        for src, target in code_files():
            (out / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / target)
        return True


@jsii.implements(ILocalBundling)
class LayerBundler:
    """pip-installs a layer's pinned requirements into `python/` (where Lambda looks in a layer)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:  # jsii passes options
        target = Path(output_dir) / "python"
        done = subprocess.run(
            pip_command(layer_requirements(self.name), target), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip could not build the {self.name!r} layer:\n{done.stderr[-4000:]}")
        # Test suites are dead weight under Lambda's 250 MB limit.
        for tests in [*target.glob("*/tests"), *target.glob("*/*/tests")]:
            shutil.rmtree(tests, ignore_errors=True)
        return True


def code_asset() -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(LAMBDA_DIR),
        asset_hash=code_hash(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=FALLBACK_IMAGE, local=CodeBundler()),
    )


def layer_asset(name: str) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(LAYERS_DIR),
        asset_hash=layer_hash(name),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=FALLBACK_IMAGE, local=LayerBundler(name)),
    )
