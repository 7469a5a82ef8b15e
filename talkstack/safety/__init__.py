"""Content safety and provenance: the operator's moderation policy, likeness and voice consent,
output scanning, watermarks and C2PA content credentials.

A layer of its own between the engines and the contract/media toolkit: the pipeline (moderation
state, finalize, deletion), the workers (output scans) and the engines (watermarking frames and
audio as they are encoded) all use it; it knows nothing of AWS, the workers or the control plane.
docs/safety.md describes what is checked, where, and what it proves.
"""
