"""talkstack's settings: every runtime knob, in pydantic-settings classes grouped by who reads them.

Groups (docs/settings.md lists every setting; `talkstack settings` prints the values in effect):

- **pipeline**: `talkstack.pipeline.config.PipelineConfig` (`get_config()`): the Lambdas' `TALKSTACK_*`
  configuration. It stays in the pipeline layer because one of its checks (default models exist)
  needs the engine registry, and this package is the bottom layer: it imports nothing else of
  talkstack, so every layer may import it.
- **limits**: `MediaLimits` (`get_limits()`), input limits shared by the CLI, the Lambdas and workers.
- **engines**: `Settings` (`get_settings()`), tools, weights and code directories, debugging.
- **local**: `LocalSettings` (`get_local_settings()`), the local stack and the AWS endpoint.
- **provenance**: `ProvenanceSettings` (`get_provenance_settings()`), the watermark (workers) and the
  C2PA content credentials (finalize).
- **client**: `ClientSettings`, the defaults of `talkstack api --url/--key`.
- **modal**: `ModalDeploySettings`, deploy-time settings of modal_workers/ (parsed when an app is
  imported).
- **cdk**: `DeploySettings` in infra/cdk/talkstack_cdk/settings.py (CDK context, then
  `TALKSTACK_CDK_*`), which stays beside the CDK app that is its only reader.

Each class is parsed once per process through its cached getter. Nothing outside the settings
modules reads `os.environ`; the local stack, which configures its in-process handlers through the
environment as AWS does, writes it with `talkstack.settings.environ` (tests/unit/test_settings.py
greps for stray reads). `talkstack.settings.catalogue` turns the classes into rows and Markdown.
"""

from talkstack.settings.client import ClientSettings
from talkstack.settings.engines import Settings, get_settings
from talkstack.settings.limits import MediaLimits, get_limits
from talkstack.settings.local import LocalSettings, get_local_settings
from talkstack.settings.modal_deploy import ModalDeploySettings, WorkerFamily, get_modal_deploy
from talkstack.settings.provenance import ProvenanceSettings, get_provenance_settings

__all__ = [
    "ClientSettings",
    "LocalSettings",
    "MediaLimits",
    "ModalDeploySettings",
    "ProvenanceSettings",
    "Settings",
    "WorkerFamily",
    "get_limits",
    "get_local_settings",
    "get_modal_deploy",
    "get_provenance_settings",
    "get_settings",
]
