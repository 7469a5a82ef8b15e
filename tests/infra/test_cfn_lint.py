"""cfn-lint on the synthesized template: no errors, no warnings but the one .cfnlintrc.yaml ignores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.cdk_synth import REPO, synth


def lint(template: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "talkstack.template.json"
    path.write_text(json.dumps(template))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    return subprocess.run([str(cfn_lint), str(path)], cwd=REPO, capture_output=True, text=True)


def test_template_is_cfn_lint_clean(tmp_path):
    done = lint(synth().template, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_variant_with_every_optional_setting_is_clean_too(tmp_path):
    s = synth(**{
        "talkstack:alarmEmail": "ops@example.com", "talkstack:writableBuckets": "customer-out",
        "talkstack:modelBackends": "multitalk=modal", "talkstack:modalEnvironment": "prod",
        "talkstack:retainData": "false", "talkstack:dispatchConcurrency": "0",
        "talkstack:readGrants": "*=s3://shared-assets/,drop:team=s3://media-library/team/",
        "talkstack:writeGrants": "k1=s3://customer-out/k1/", "talkstack:avatarTimeoutS": "7200",
    })  # fmt: skip
    done = lint(s.template, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint_is_live_and_only_w3005_is_ignored(tmp_path):
    """Without the config file's ignore, CDK's redundant DependsOn shows up as W3005, and nothing else."""
    path = tmp_path / "t.json"
    path.write_text(json.dumps(synth().template))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    done = subprocess.run([str(cfn_lint), str(path)], cwd=tmp_path, capture_output=True, text=True)
    codes = {
        line.split()[0] for line in done.stdout.splitlines() if line[:1] in "EWI" and line[1:5].isdigit()
    }
    assert codes == {"W3005"}, done.stdout
