"""Lambda packaging: the layers' pins agree with pyproject.toml, each handler imports nothing its
layer lacks, and the real `cdk synth` (CLI, local bundling, pip for arm64) builds assets that fit
Lambda's 250 MB limit and pass cdk-nag and cfn-lint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.cdk_synth import REPO

sys.path.insert(0, str(REPO / "infra" / "cdk"))
from talkstack_cdk.bundling import LAYERS, code_files, layer_requirements
from talkstack_cdk.functions import FUNCTIONS

# What the Lambda Python runtime itself provides.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}
# Imported here only because they happen to be installed; the importer works without them.
OPTIONAL = {"click": "httpx loads its command line only when click is installed"}
LAMBDA_LIMIT = 250 * 1024 * 1024


def pins(layer: str) -> dict[str, str]:
    lines = layer_requirements(layer).read_text().splitlines()
    found = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(r.name): str(r.specifier).removeprefix("==") for r in found}


def project_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = [*project["dependencies"], *project["optional-dependencies"]["modal"]]
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in listed}


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_pins_satisfy_pyproject(layer):
    required = project_requirements()
    pinned = pins(layer)
    for name, version in pinned.items():
        if name in required:
            assert required[name].specifier.contains(version), (
                f"{layer}: {name}=={version} vs {required[name]}"
            )
    assert {"aws-lambda-powertools", "pydantic", "httpx", "standardwebhooks"} <= set(pinned)


# Top-level modules a handler's import loaded from site-packages (stdlib and talkstack excluded).
IMPORTS = """
import importlib, json, sys, sysconfig
before = set(sys.modules)
sys.path.insert(0, "aws/lambda")
importlib.import_module(sys.argv[1])
site = (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
loaded = {m.split(".")[0] for m in set(sys.modules) - before}
files = {m: getattr(sys.modules.get(m), "__file__", None) or "" for m in loaded}
print(json.dumps(sorted(m for m, f in files.items() if f.startswith(site))))
"""


def test_every_handler_imports_only_what_its_layer_and_the_runtime_provide():
    """Import each handler in a fresh interpreter and map every top-level module it loaded to its
    distribution: each must be the standard library, talkstack, the runtime's, or in the layer."""
    from importlib.metadata import packages_distributions

    from talkstack.local.resources import LocalResources

    r = LocalResources()
    env = {**os.environ, **r.client_env(), **r.pipeline_env(), "TALKSTACK_WORKER_BACKEND": "modal"}
    running = {
        spec.name: subprocess.Popen(
            [sys.executable, "-c", IMPORTS, spec.name], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for spec in FUNCTIONS
    }
    distributions = packages_distributions()
    for spec in FUNCTIONS:
        out, _ = running[spec.name].communicate(timeout=120)
        assert running[spec.name].returncode == 0, spec.name
        allowed = set(pins(spec.layer)) | RUNTIME_PROVIDED
        for module in json.loads(out):
            if module in OPTIONAL:
                continue
            dists = {canonicalize_name(d) for d in distributions.get(module, [])}
            assert dists, f"{spec.name}: {module} belongs to no installed distribution"
            assert dists & allowed, f"{spec.name} imports {module} ({dists}), not in layer {spec.layer!r}"


@pytest.mark.slow
def test_the_code_asset_carries_the_bundled_templates_and_every_file_they_name():
    # The API lists and generates the bundled templates and copies their `asset:` files into the
    # input bucket: in a Lambda they exist only if the code asset carries them.
    from talkstack.templates import asset_path, bundled_templates

    shipped = {target.as_posix() for _, target in code_files()}
    root = REPO / "talkstack"
    for template_id, template in bundled_templates().items():
        assert f"talkstack/assets/templates/{template_id}.yaml" in shipped
        for asset in template.assets:
            path = asset_path(asset.path).resolve().relative_to(root.resolve())
            assert f"talkstack/{path.as_posix()}" in shipped, asset.path
    assert not any(name.endswith((".task", ".tflite", ".ttf")) for name in shipped)  # no models, no fonts


def test_cdk_cli_synth_bundles_fitting_assets_without_docker(tmp_path):
    out = tmp_path / "cdk.out"
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_VERSION_CHECK": "1",
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--no-notices", "--quiet", "--output", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    template = json.loads((out / "talkstack.template.json").read_text())
    assets = json.loads((out / "talkstack.assets.json").read_text())["files"]

    def folder(asset_hash: str) -> Path:
        return out / assets[asset_hash]["source"]["path"]

    def size(path: Path) -> int:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    layers = {
        lid: folder(r["Properties"]["Content"]["S3Key"].removesuffix(".zip"))
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::LayerVersion"
    }
    assert len(layers) == len(LAYERS)
    for layer in layers.values():
        assert (layer / "python" / "pydantic_core").is_dir()
        assert any((layer / "python" / "pydantic_core").glob("*aarch64*.so"))  # arm64 wheels
    functions = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    ]
    code_dirs = set()
    for fn in functions:
        if not fn.get("Handler", "").endswith(".handler") or "Layers" not in fn:
            continue
        code = folder(fn["Code"]["S3Key"].removesuffix(".zip"))
        code_dirs.add(code)
        module = fn["Handler"].split(".")[0]
        assert (code / f"{module}.py").is_file()
        (layer_ref,) = fn["Layers"]
        total = size(code) + size(layers[layer_ref["Ref"]])
        assert total < LAMBDA_LIMIT, f"{module}: {total / 2**20:.0f} MB unzipped"
    (code,) = code_dirs  # one code asset for every function
    assert (code / "talkstack" / "pipeline" / "config.py").is_file()
    # no models; of the media, only what the API's bundled templates copy into the input bucket
    assert not list(code.rglob("*.task")) and not list(code.rglob("*.tflite"))
    pictures = [p.relative_to(code).as_posix() for p in code.rglob("*.png")]
    assert pictures == ["talkstack/assets/samples/portrait.png"]
    assert (code / "talkstack" / "assets" / "templates" / "social-ad.yaml").is_file()
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(out / "talkstack.template.json")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout
