"""Composition: assemble a finished video from rendered scenes on a CPU (ffmpeg, numpy, Pillow).

The compose step (talkstack.workers.lite_steps.compose) calls `render.compose_video`: scenes laid
out on the canvas over their backgrounds, text overlays, captions, transitions, music ducked under
speech; then thumbnails, an animated preview and, for transparent compositions, the alpha files.
It imports no engine: what the engines made arrives as files (docs/compositions.md).
"""
