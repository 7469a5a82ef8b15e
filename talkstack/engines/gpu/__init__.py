"""GPU engines: the real models behind `multitalk`, `infinitetalk`, `chatterbox`, `indextts2`,
`ltx-video` and `wan2.2-ti2v-5b`.

Each engine is a plain class (base.py) that loads its model once and then renders worker tasks
through the worker protocol. The Modal apps in `modal_workers/` wrap them; the local worker pool
can run them too (a local GPU, or tiny random models in tests). Heavy libraries (torch, diffusers,
transformers, the official model code) are imported inside the engines only, so this package imports
anywhere.
"""
