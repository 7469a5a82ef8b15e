# # Fill the weights volume: every model's weights, pinned and verified, in one command
#
#     modal run -m modal_workers.weights --models all
#     modal run -m modal_workers.weights --models multitalk,chatterbox
#     modal run -m modal_workers.weights --models all --pinned-only
#
# The GPU apps (avatar, voice, video) never download at start-up: they read the `talkstack-weights`
# Volume, one folder per repository (`/weights/<org>/<name>`). This app fills it on a CPU container
# from the catalogue in talkstack/engines/gpu/weights_catalog.py (pinned commits, allow patterns, sizes,
# licences). Running it again is cheap: a folder whose manifest verifies is skipped, a half-finished
# one is resumed, and the Volume is committed after every repository, so a timeout or a preemption
# keeps what was already fetched. `--models all` is ~200 GB; the Wan2.1 base alone is ~82 GB.
#
# A repository with no pinned commit in the catalogue (today MeiGen-AI/MeiGen-MultiTalk) is fetched
# when a model that needs it is asked for (by name or by `all`), with a loud note: its default
# branch is resolved to a commit, that commit is recorded on the Volume (`.talkstack-revision.json`
# beside the files) before anything is fetched, and the line that makes it the catalogue's pin is
# printed. Later runs, and the engines' load checks, hold the Volume to that commit. Paste the line
# into talkstack/engines/gpu/weights_catalog.py and commit it. `--pinned-only` refuses such
# repositories instead (the others still download, and the run exits non-zero).
#
# Hugging Face token: every catalogued repository is public, so none is needed. A token only lifts
# the anonymous rate limit. Modal resolves a named secret when the app starts, and a missing one
# fails the run, so the secret is opt-in rather than always attached:
#
#     modal secret create talkstack-huggingface HF_TOKEN=hf_...
#     TALKSTACK_HF_SECRET=1 modal run -m modal_workers.weights --models all

from __future__ import annotations

from pathlib import Path

import modal

from modal_workers.common import HF_SECRET, WEIGHTS_DIR, base_image, weights_volume, with_talkstack
from talkstack.engines.gpu import weights
from talkstack.settings import ModalDeploySettings, get_settings

MINUTES = 60
HOURS = 60 * MINUTES

app = modal.App("talkstack-weights")

# The shared worker image (it already pins huggingface_hub), no ML stack. Xet's parallel transfer,
# and its chunk cache on the container disk: under the default HF_HOME (on the Volume) that cache
# would keep a second copy of everything downloaded.
image = with_talkstack(base_image().env({"HF_XET_HIGH_PERFORMANCE": "1", "HF_XET_CACHE": "/tmp/hf-xet"}))


def _secrets() -> list[modal.Secret]:
    """The optional HF token secret, attached only when the deploying shell opts in."""
    if ModalDeploySettings().hf_secret:
        return [modal.Secret.from_name(HF_SECRET)]
    return []


def _hf_token() -> str | None:
    """HF_TOKEN, which the optional secret puts into the container's environment."""
    token = get_settings().hf_token
    if token is None:
        return None
    return token.get_secret_value() or None  # an empty variable means no token, as before


@app.function(
    image=image,
    volumes={WEIGHTS_DIR: weights_volume},
    secrets=_secrets(),
    cpu=4.0,  # parallel transfers and hashing; no GPU
    memory=8192,
    timeout=6 * HOURS,  # ~200 GB; generous, and a retry resumes where a run stopped
    # One download at a time: two runs would write the same volume files. An operator's tool, so a
    # fixed 1, not a setting.
    max_containers=1,
    # Safe to retry: downloads resume and finished repositories are skipped.
    retries=modal.Retries(max_retries=2, initial_delay=30.0, backoff_coefficient=2.0),
)
def download_models(model_ids: list[str], allow_unpinned: bool = True) -> list[dict]:
    """Download, verify and set up everything `model_ids` need; one row per repository/step."""
    reports = weights.prepare(
        model_ids,
        Path(WEIGHTS_DIR),
        token=_hf_token(),
        allow_unpinned=allow_unpinned,
        after_each=lambda _report: weights_volume.commit(),
    )
    weights_volume.commit()
    rows = [report.to_dict() for report in reports]
    print(weights.format_table(rows), flush=True)
    return rows


@app.local_entrypoint()
def main(models: str = "all", pinned_only: bool = False) -> None:
    # Validate here, before a container starts: a typo should cost nothing.
    model_ids = weights.resolve_models(models)
    specs = weights.specs_for(model_ids)
    total = sum(spec.size_gb for spec in specs)
    print(f"Weights for {', '.join(model_ids)}: {len(specs)} repositories, ~{total:.0f} GB from empty")
    for spec in specs:
        if not spec.pinned:
            note = (
                "will be refused (--pinned-only)"
                if pinned_only
                else "NOT PINNED: fetched at the commit its default branch resolves to, which is "
                f"then locked on the volume ({weights.LOCK})"
            )
            print(f"  {spec.repo_id}: {note}")
    rows = download_models.remote(model_ids, not pinned_only)
    print(weights.format_table(rows))
    pins = [row["message"] for row in rows if row["ok"] and not row["pinned"] and row["message"]]
    if pins:
        bar = "!" * 100
        print(f"{bar}\nUnpinned repositories were fetched and locked; pin them in the catalogue:")
        print("\n".join(pins), f"\n{bar}", sep="")
    failed = [row["name"] for row in rows if not row["ok"]]
    if failed:
        raise SystemExit(f"not ready: {', '.join(failed)}")
