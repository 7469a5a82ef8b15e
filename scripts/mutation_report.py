"""Per-module mutation scores from the last `mutmut run`, the survivors with their diffs, and the
gate `make mutation` applies (docs/testing.md).

Run from the repository root after `mutmut run` (it reads mutmut's own result files under mutants/
through mutmut's API, pinned in pyproject.toml's dev extra).

A survivor is either a gap in the tests or a mutant that cannot change behaviour (an equivalent
mutant). Equivalent and accepted ones are listed in scripts/mutation_accepted.toml, each with its
reason, keyed by the function and the mutated line, so a listing survives renumbering of mutants.
The gate: no unexplained survivor in the strict modules, and at least MIN_SCORE killed overall.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

ACCEPTED = Path("scripts/mutation_accepted.toml")
SURVIVORS = Path("mutants/survivors.md")

MIN_SCORE = 0.80
"""Killed / (killed + survived + not covered), over every mutated module (the issue's target)."""

STRICT = (
    "talkstack.pipeline.tenancy",  # what a key may read and where its outputs go
    "talkstack.pipeline.jobids",  # ingest naming: one job per dropped object
    "talkstack.pipeline.webhook_signing",  # webhook signing
    "talkstack.api.service.ApiService._idempotent_submit",  # idempotency, per key
    "talkstack.api.service.ApiService.submit",
)
"""Modules (or module.function prefixes) where every survivor must be listed as equivalent."""


@dataclass(frozen=True)
class Mutant:
    name: str  # talkstack.pipeline.tenancy.x_check_reads__mutmut_3
    status: str
    diff: str

    @property
    def module(self) -> str:
        parts = self.name.split(".")
        first = next(i for i, part in enumerate(parts) if part.startswith("x_") or part.startswith("xǁ"))
        return ".".join(parts[:first])

    @property
    def function(self) -> str:
        """module.function or module.Class.method, without mutmut's prefixes and number."""
        tail = self.name[len(self.module) + 1 :].rsplit("__mutmut_", 1)[0]
        tail = tail.removeprefix("x_").removeprefix("xǁ").replace("ǁ", ".")
        return f"{self.module}.{tail}"

    @property
    def mutated_lines(self) -> str:
        """The diff's added lines, stripped: with the function, what identifies a mutant."""
        lines = self.diff.splitlines()
        added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
        return "\n".join(line[1:].strip() for line in added)


def load_mutants() -> list[Mutant]:
    mutants = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            status = status_by_exit_code[code]
            diff = get_diff_for_mutant(name, path=path) if status in ("survived", "no tests") else ""
            mutants.append(Mutant(name, status, diff))
    return mutants


def load_accepted() -> list[dict[str, str]]:
    if not ACCEPTED.exists():
        return []
    entries = tomllib.loads(ACCEPTED.read_text())["accepted"]
    for entry in entries:
        missing = {"function", "line", "reason"} - entry.keys()
        if missing:
            raise SystemExit(f"{ACCEPTED}: an entry lacks {', '.join(sorted(missing))}: {entry}")
    return entries


def accepted_reason(mutant: Mutant, accepted: list[dict[str, str]]) -> str | None:
    for entry in accepted:
        if entry["function"] == mutant.function and entry["line"].strip() in mutant.mutated_lines:
            return entry["reason"]
    return None


def is_strict(mutant: Mutant) -> bool:
    return any(mutant.function == s or mutant.function.startswith(s + ".") for s in STRICT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-gate", action="store_true", help="print the table, exit 0 whatever it says")
    args = parser.parse_args()

    mutants = load_mutants()
    if not mutants:
        print("no mutation results: run `mutmut run` first (make mutation)", file=sys.stderr)
        return 2
    accepted = load_accepted()
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    open_survivors: list[Mutant] = []
    explained: list[tuple[Mutant, str]] = []
    for mutant in mutants:
        counts = by_module[mutant.module]
        if mutant.status in ("survived", "no tests"):
            reason = accepted_reason(mutant, accepted)
            if reason is None:
                open_survivors.append(mutant)
                counts[mutant.status] += 1
            else:
                explained.append((mutant, reason))
                counts["accepted"] += 1
        else:
            counts[mutant.status] += 1

    def score(c: Counter[str]) -> float:
        killed = c["killed"] + c["timeout"] + c["caught by type check"]
        judged = killed + c["survived"] + c["no tests"]
        return killed / judged if judged else 1.0

    columns = ("mutants", "killed", "accepted", "survived", "no tests", "unrun", "score")
    header = f"{'module':44} " + " ".join(f"{c:>8}" for c in columns)
    print(header)
    print("-" * len(header))
    total: Counter[str] = Counter()
    for module in sorted(by_module):
        c = by_module[module]
        total.update(c)
        killed = c["killed"] + c["timeout"] + c["caught by type check"]
        print(
            f"{module:44} {sum(c.values()):8} {killed:8} {c['accepted']:8} {c['survived']:8} "
            f"{c['no tests']:8} {c['not checked']:8} {score(c):8.1%}"
        )
    print("-" * len(header))
    killed = total["killed"] + total["timeout"] + total["caught by type check"]
    print(
        f"{'all':44} {sum(total.values()):8} {killed:8} {total['accepted']:8} {total['survived']:8} "
        f"{total['no tests']:8} {total['not checked']:8} {score(total):8.1%}"
    )

    SURVIVORS.parent.mkdir(exist_ok=True)
    with SURVIVORS.open("w") as out:
        out.write(f"# Surviving mutants ({len(open_survivors)} open, {len(explained)} accepted)\n\n")
        for mutant in open_survivors:
            out.write(f"## {mutant.name} ({mutant.status})\n\n```diff\n{mutant.diff}\n```\n\n")
        out.write("# Accepted (scripts/mutation_accepted.toml)\n\n")
        for mutant, reason in explained:
            out.write(f"## {mutant.name}\n\n{reason}\n\n```diff\n{mutant.diff}\n```\n\n")
    print(f"\nsurvivors with their diffs: {SURVIVORS}")

    failures = []
    if total["not checked"]:
        failures.append(f"{total['not checked']} mutant(s) not run yet: the run was interrupted")
    strict_open = [m.name for m in open_survivors if is_strict(m)]
    if strict_open:
        failures.append(f"{len(strict_open)} survivor(s) in strict code: {', '.join(strict_open[:8])}")
    if score(total) < MIN_SCORE:
        failures.append(f"overall score {score(total):.1%} is under {MIN_SCORE:.0%}")
    for failure in failures:
        print(f"MUTATION GATE: {failure}", file=sys.stderr)
    return 0 if args.no_gate or not failures else 1


if __name__ == "__main__":
    sys.exit(main())
