"""Templates: versioned documents that describe a composition with typed variables and defaults
(docs/templates.md). Bundled ones live in talkstack/assets/templates; operators add their own."""
