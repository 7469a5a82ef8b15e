"""Compositions: a finished video made of scenes (issue 19, docs/compositions.md).

A `composition` job carries `scenes`; each scene has a source (an avatar, a generated clip, an
uploaded image or video, or a title card), a layout that places it on the canvas over a background,
text overlays, a transition into the next scene and optional music. The state machine renders the
scenes' engine steps in parallel (a Map over `Plan.scenes`), cuts people out of their backgrounds
where a layout asks for it (the `matte` step) and a `compose` step assembles the whole video, its
captions, thumbnails and animated preview on a CPU.

Every scene that needs an engine becomes an ordinary avatar or video request for that engine
(`CompositionRequest.scene_request`), so a scene runs through exactly the code a single job does.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, TypeAdapter, model_validator

from talkstack.contract.consent import ConsentAttestation
from talkstack.contract.fields import (
    MatteModelId,
    MediaRef,
    SpeechText,
    StrictModel,
    not_blank,
)
from talkstack.contract.request import (
    AvatarInputs,
    AvatarOptions,
    AvatarRequest,
    JobRequestBase,
    VideoInputs,
    VideoOptions,
    VideoRequest,
    VoiceRequest,
)

AspectRatio = Literal["16:9", "9:16", "1:1", "4:5"]
"""Width:height of the output. 9:16 and 4:5 are portrait (phone feeds)."""
CompositionResolution = Literal["720p", "1080p"]
"""The output's short side: 720 or 1080 pixels."""
FontId = Literal["sans", "sans-bold", "serif", "mono"]
"""Fonts that ship with talkstack (talkstack/assets/fonts: DejaVu, a free licence; see NOTICE)."""
Colour = Annotated[
    str,
    Field(pattern=r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$", description="#rrggbb or #rrggbbaa"),
]
Seconds = Annotated[float, Field(gt=0, le=600)]
MAX_SCENES = 20
PREVIEW_SHORT_SIDE = 360
"""Preview renders (`preview: true`) are this many pixels on their short side."""
SHORT_SIDES: dict[str, int] = {"720p": 720, "1080p": 1080}
DEFAULT_STILL_SECONDS = 4.0
"""How long an image or title scene lasts when it gives no duration_s."""


def canvas_size(
    aspect: AspectRatio, resolution: CompositionResolution, preview: bool = False
) -> tuple[int, int]:
    """(width, height) of the output: the short side from the resolution (360 for a preview), the
    long side from the aspect ratio, both even (H.264 with yuv420p needs even sizes)."""
    short = PREVIEW_SHORT_SIDE if preview else SHORT_SIDES[resolution]
    across, down = (int(part) for part in aspect.split(":"))
    if across >= down:
        long = short * across / down
        width, height = long, short
    else:
        long = short * down / across
        width, height = short, long
    return int(round(width / 2) * 2), int(round(height / 2) * 2)


# ---------------------------------------------------------------------------------------------
# Scene sources
# ---------------------------------------------------------------------------------------------

_SET_BY_COMPOSITION = ("width", "height", "fps")


def _overridden(options: StrictModel, names: tuple[str, ...]) -> list[str]:
    """Which of `names` hold something other than their default. Not `model_fields_set`: a stored
    job record holds every field (its JSON is a full dump), and must parse back."""
    fields = type(options).model_fields
    return [name for name in names if getattr(options, name) != fields[name].default]


class AvatarSource(StrictModel):
    """A talking avatar: a photo driven by speech audio or by text (a voice step first), rendered by
    any avatar engine. Its size and frame rate are the composition's."""

    type: Literal["avatar"]
    inputs: AvatarInputs
    options: AvatarOptions = Field(default_factory=AvatarOptions)
    """The avatar engine's options, as for an avatar job; width, height and fps are set by the
    composition, and long avatars render as one stream (long_audio "sequential")."""

    @model_validator(mode="after")
    def _check_options(self) -> AvatarSource:
        for name in _overridden(self.options, _SET_BY_COMPOSITION):
            raise ValueError(f"options.{name}: set by the composition (options.resolution / fps)")
        if self.options.long_audio == "parallel":
            raise ValueError("options.long_audio: scenes render as one stream; leave it 'sequential'")
        if self.inputs.second_audio is not None:
            raise ValueError("inputs.second_audio: a scene animates one speaker")
        return self


class VideoSource(StrictModel):
    """A generated clip (text-to-video, or image-to-video with inputs.image)."""

    type: Literal["video"]
    inputs: VideoInputs
    options: VideoOptions = Field(default_factory=VideoOptions)
    """The video engine's options; aspect, width, height and fps are set by the composition."""

    @model_validator(mode="after")
    def _check_options(self) -> VideoSource:
        for name in _overridden(self.options, ("aspect", *_SET_BY_COMPOSITION)):
            raise ValueError(f"options.{name}: set by the composition (options.aspect / fps)")
        return self


class MediaSource(StrictModel):
    """An uploaded image (.png, .jpg, .webp) or video (.mp4, .mov, .webm)."""

    type: Literal["media"]
    media: MediaRef
    start_s: Annotated[float, Field(ge=0)] = 0.0
    """Where to start in a video (ignored for images)."""
    keep_audio: bool = True
    """Keep a video's own sound (it is captioned only when the scene gives a transcript)."""


class TitleSource(StrictModel):
    """A title card: the scene's background with a large title (and an optional subtitle)."""

    type: Literal["title"]
    title: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(not_blank)]
    subtitle: Annotated[str, Field(max_length=300)] | None = None


SceneSource = Annotated[AvatarSource | VideoSource | MediaSource | TitleSource, Field(discriminator="type")]


# ---------------------------------------------------------------------------------------------
# Layout, background, overlays, transitions, music, captions
# ---------------------------------------------------------------------------------------------

Position = Literal[
    "center", "left", "right", "top", "bottom", "top_left", "top_right", "bottom_left", "bottom_right"
]


class Layout(StrictModel):
    """Where the scene's source goes on the canvas.

    - `full`: it covers the canvas (scaled to cover, centred, cropped).
    - `background`: it is placed over the scene background at `position`, `scale` of the canvas height.
    - `pip`: picture-in-picture: its frame, in `shape`, at `position` and `scale` over the background.
    - `split`: it fills the `side` half, the background fills the other half.
    """

    type: Literal["full", "background", "pip", "split"] = "full"
    position: Position = "center"
    scale: Annotated[float, Field(ge=0.1, le=1.0)] = 0.8
    """Height of the placed source as a fraction of the canvas height (`background`, `pip`)."""
    shape: Literal["rectangle", "rounded", "circle"] = "rectangle"
    """Outline of the placed source (`pip`; `circle` crops a square around the centre)."""
    side: Literal["left", "right"] = "left"
    """Which half the source takes (`split`; in portrait canvases the halves are top and bottom,
    `left` meaning the top)."""
    cutout: bool | None = None
    """Cut the person out of their own background (the `matte` step) and show the scene background
    behind them. Default: on for avatar and video-upload sources in `background` layouts, else off."""


class Background(StrictModel):
    """What is behind the source: a colour, an image or a video (looped, muted)."""

    type: Literal["colour", "image", "video"] = "colour"
    colour: Colour = "#101820"
    media: MediaRef | None = None
    """The image or video, for type image / video."""

    @model_validator(mode="after")
    def _check_media(self) -> Background:
        if self.type == "colour" and self.media is not None:
            raise ValueError("media: only for image or video backgrounds (type is 'colour')")
        if self.type != "colour" and self.media is None:
            raise ValueError(f"media: required for a {self.type} background")
        return self


BulletItem = Annotated[str, Field(min_length=1, max_length=200)]


class TextOverlay(StrictModel):
    """Text on top of the scene, inside the canvas's safe margins.

    `title` (large, upper third), `subtitle` (below the title), `lower_third` (a name bar at the
    bottom left: `text` and an optional second line `secondary`), `bullets` (`items`, revealed one by
    one between start_s and end_s), `text` (free text at `position`)."""

    type: Literal["title", "subtitle", "lower_third", "bullets", "text"]
    text: Annotated[str, Field(max_length=500)] | None = None
    secondary: Annotated[str, Field(max_length=200)] | None = None
    items: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=8)] | None
    ) = None
    start_s: Annotated[float, Field(ge=0)] = 0.0
    """Seconds after the scene starts."""
    end_s: Annotated[float, Field(gt=0)] | None = None
    """Seconds after the scene starts; default the scene's end."""
    position: Position | None = None
    """Default by type (see above)."""
    font: FontId | None = None
    """Default by type: sans-bold for title and lower_third, sans otherwise."""
    colour: Colour = "#FFFFFF"
    accent: Colour | None = None
    """Bar colour of a lower third, bullet colour of a list; default a translucent dark panel."""

    @model_validator(mode="after")
    def _check_text(self) -> TextOverlay:
        if self.type == "bullets":
            if not self.items:
                raise ValueError("items: a bullets overlay needs at least one item")
            if self.text is not None:
                raise ValueError("text: a bullets overlay takes items, not text")
        else:
            if self.items is not None:
                raise ValueError(f"items: only for bullets overlays (this is {self.type!r})")
            if not (self.text or "").strip():
                raise ValueError(f"text: a {self.type} overlay needs text")
        if self.secondary is not None and self.type != "lower_third":
            raise ValueError("secondary: only for lower_third overlays")
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self


class Transition(StrictModel):
    """How a scene hands over to the next one. `crossfade` and `fade` (through `colour`) overlap the
    two scenes by `duration_s`, so the video is shorter than the sum of its scenes by that much."""

    type: Literal["cut", "crossfade", "fade"] = "cut"
    duration_s: Annotated[float, Field(ge=0.1, le=2.0)] = 0.5
    colour: Colour = "#000000"

    @property
    def overlap_s(self) -> float:
        return 0.0 if self.type == "cut" else self.duration_s


class Music(StrictModel):
    """Background music: looped to length, faded in and out, ducked under speech."""

    media: MediaRef
    volume_db: Annotated[float, Field(ge=-40, le=0)] = -18.0
    """Level where nobody speaks (dB relative to full scale of the music file)."""
    duck_db: Annotated[float, Field(ge=0, le=40)] = 12.0
    """How much quieter the music goes under speech (0 turns ducking off)."""


class Captions(StrictModel):
    """Word-timed captions of every speech track: from the voice step's timings for scripts, from
    the scene's `transcript` aligned to its audio otherwise; their language follows the speech."""

    sidecar: bool = True
    """Write SRT and WebVTT files beside the video."""
    burn_in: Literal["none", "classic", "highlight"] = "none"
    """Draw them on the frames: `classic` (at most two lines at the bottom) or `highlight` (social
    style: a few words at a time, the word being spoken highlighted)."""
    font: FontId = "sans-bold"
    colour: Colour = "#FFFFFF"
    highlight_colour: Colour = "#FFD400"
    max_line_chars: Annotated[int, Field(ge=10, le=80)] = 42


class Scene(StrictModel):
    source: SceneSource
    layout: Layout = Field(default_factory=Layout)
    background: Background = Field(default_factory=Background)
    overlays: Annotated[list[TextOverlay], Field(max_length=10)] = Field(default_factory=list)
    duration_s: Seconds | None = None
    """Length of the scene. Avatar scenes last as long as their speech, generated clips as long as
    their options.duration_s, video uploads as long as the upload (each cut to duration_s when it is
    given); images and title cards last duration_s (default 4 s)."""
    transition: Transition = Field(default_factory=Transition)
    """Into the next scene (ignored on the last)."""
    music: Music | None = None
    """This scene's music (instead of the composition's)."""
    transcript: SpeechText | None = None
    """What is said in an audio-driven avatar's speech or a video upload's sound, for its captions."""
    captions: bool = True
    """Caption this scene's speech (when the composition's captions are on)."""

    @property
    def cutout(self) -> bool:
        """Whether the person is cut out of their own background (the matte step runs)."""
        if self.layout.cutout is not None:
            return self.layout.cutout
        movable = isinstance(self.source, AvatarSource) or (
            isinstance(self.source, MediaSource) and _is_video(self.source.media)
        )
        return movable and self.layout.type == "background"

    @model_validator(mode="after")
    def _check_scene(self) -> Scene:
        source = self.source
        if self.layout.cutout and isinstance(source, TitleSource):
            raise ValueError("layout.cutout: a title card has no person to cut out")
        if (
            self.transcript is not None
            and isinstance(source, AvatarSource)
            and source.inputs.text is not None
        ):
            raise ValueError(
                "transcript: the scene speaks inputs.text; a transcript is for audio or video sources"
            )
        if self.transcript is not None and isinstance(source, TitleSource | VideoSource):
            raise ValueError(f"transcript: a {source.type} scene has no speech to caption")
        return self


VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def _is_video(ref: MediaRef) -> bool:
    return ref.key.lower().endswith(VIDEO_EXTENSIONS)


class CompositionOptions(StrictModel):
    aspect: AspectRatio = "16:9"
    resolution: CompositionResolution = "720p"
    fps: Annotated[int, Field(ge=24, le=30)] = 25
    captions: Captions = Field(default_factory=Captions)
    music: Music | None = None
    """Music under the whole video (a scene's own music replaces it for that scene)."""
    transparent: bool = False
    """Also write the video with an alpha channel, transparent wherever no person is (WebM VP9 with
    alpha and ProRes 4444 MOV, for editors to composite). Every scene must be an avatar or a video
    upload with the person cut out (layout.cutout); backgrounds are ignored in those files."""
    matte_model: MatteModelId | None = None
    """The model that cuts people out; default the deployment's TALKSTACK_MATTE_MODEL."""


class TemplateOrigin(StrictModel):
    """The template a composition was generated from (set by the templates endpoints; echoed in
    the job's result so a re-render knows its origin)."""

    id: str
    version: int
    variables: dict[str, Any] = Field(default_factory=dict)


class CompositionRequest(JobRequestBase):
    """A finished video from scenes: rendered in parallel, then composed (docs/compositions.md)."""

    task: Literal["composition"]
    scenes: Annotated[list[Scene], Field(min_length=1, max_length=MAX_SCENES)]
    options: CompositionOptions = Field(default_factory=CompositionOptions)
    preview: bool = False
    """Render fast and cheap: lite engines, 360p, a PREVIEW mark; generated clips are shown as cards
    naming their prompt. Start the full render from the preview with POST /v1/jobs/{id}/render."""
    consent: ConsentAttestation | None = None
    """For every avatar scene's photo and reference voice (as for an avatar job)."""
    template: TemplateOrigin | None = None

    inputs: ClassVar[None] = None  # a composition's media are inside its scenes (media_inputs)

    @model_validator(mode="after")
    def _check_composition(self) -> CompositionRequest:
        if self.options.transparent:
            for index, scene in enumerate(self.scenes):
                if isinstance(scene.source, TitleSource | VideoSource) or not scene.cutout:
                    raise ValueError(
                        f"scenes[{index}]: options.transparent needs every scene to cut its person out "
                        "(an avatar or a video upload with layout.cutout)"
                    )
        return self

    @property
    def primary_model(self) -> str:
        return "compose"

    @property
    def worker_steps(self) -> tuple[str, ...]:
        steps: list[str] = []
        for index in range(len(self.scenes)):
            steps.extend(self.scene_steps(index))
        return (*dict.fromkeys(steps), "compose")

    def scene_steps(self, index: int) -> tuple[str, ...]:
        """The engine steps scene `index` runs before compose, in order."""
        scene = self.scenes[index]
        request = self.scene_request(index)
        steps: tuple[str, ...] = request.worker_steps if request is not None else ()
        return (*steps, "matte") if scene.cutout else steps

    def scene_request(self, index: int) -> AvatarRequest | VideoRequest | None:
        """The ordinary job request scene `index`'s engine steps run as (None: no engine; an image,
        video upload or title card, or a generated clip in a preview). A preview swaps every engine
        for the lite one."""
        source = self.scenes[index].source
        if isinstance(source, AvatarSource):
            options = source.options.model_copy(update={"fps": self.options.fps, "long_audio": "sequential"})
            if options.resolution is None:
                options = options.model_copy(
                    update={
                        "resolution": "480p" if self.preview or self.options.resolution == "720p" else "720p"
                    }
                )
            if self.preview:
                voice = options.voice
                options = options.model_copy(
                    update={
                        "model": "lite-avatar",
                        "resolution": "480p",
                        "voice": voice.model_copy(update={"model": "lite-voice"}) if voice else None,
                    }
                )
            return AvatarRequest(task="avatar", inputs=source.inputs, options=options, consent=self.consent)
        if isinstance(source, VideoSource) and not self.preview:
            aspect = self.options.aspect if self.options.aspect != "4:5" else "1:1"
            options = source.options.model_copy(update={"aspect": aspect, "fps": self.options.fps})
            return VideoRequest(task="video", inputs=source.inputs, options=options)
        return None

    # Media: every MediaRef in the scenes and options, by dotted path (`scenes.0.source.inputs.image`).

    def media_inputs(self) -> dict[str, MediaRef]:
        return {path: ref for path, ref in _walk_media(self, "") if not path.startswith("consent.")}

    def referenced_media(self) -> dict[str, MediaRef]:
        return dict(_walk_media(self, ""))

    def with_media(self, refs: dict[str, MediaRef]) -> CompositionRequest:
        data = self.model_dump(mode="python", round_trip=True, exclude_unset=True)
        for path, ref in refs.items():
            *parents, leaf = path.split(".")
            node: Any = data
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[leaf] = ref
        return type(self).model_validate(data)


def _walk_media(node: Any, prefix: str) -> list[tuple[str, MediaRef]]:
    found: list[tuple[str, MediaRef]] = []
    if isinstance(node, MediaRef):
        return [(prefix.rstrip("."), node)]
    if isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(_walk_media(item, f"{prefix}{index}."))
    elif isinstance(node, StrictModel):
        for name in type(node).model_fields:
            found.extend(_walk_media(getattr(node, name), f"{prefix}{name}."))
    return found


# ---------------------------------------------------------------------------------------------
# What the compose step is given (the worker task's options) and its file roles
# ---------------------------------------------------------------------------------------------


class ComposeScene(StrictModel):
    """One scene as the compose step sees it: the scene as requested, and what its engine steps made."""

    scene: Scene
    rendered: bool
    """An engine rendered it: input `scene_<i>_video` is that render (an avatar's carries its speech)."""
    words: bool = False
    """Input `scene_<i>_words` holds the voice step's word timings (SpeechTimings JSON)."""
    mask: bool = False
    """Input `scene_<i>_mask` is the matte step's person mask (a grey video, white = person)."""
    language: str = "en"
    """Language of the scene's speech, for its captions."""


class ComposeOptions(StrictModel):
    """The compose step's options: the whole composition, resolved to files by role."""

    scenes: Annotated[list[ComposeScene], Field(min_length=1, max_length=MAX_SCENES)]
    options: CompositionOptions
    preview: bool = False
    width: int = Field(ge=2, le=4096, multiple_of=2)
    height: int = Field(ge=2, le=4096, multiple_of=2)

    def captioned_scenes(self) -> list[int]:
        """The scenes whose speech is captioned (none when captions are neither written nor burnt
        in): those with word timings from their voice step (`words`), and those with a `transcript`
        to align to their sound (an avatar render's speech, a video upload's kept sound)."""
        captions = self.options.captions
        if not captions.sidecar and captions.burn_in == "none":
            return []
        found = []
        for index, item in enumerate(self.scenes):
            source = item.scene.source
            if not item.scene.captions:
                continue
            if item.words or (
                item.scene.transcript is not None
                and (
                    (item.rendered and isinstance(source, AvatarSource))
                    or (isinstance(source, MediaSource) and source.keep_audio and _is_video(source.media))
                )
            ):
                found.append(index)
        return found

    @property
    def writes_caption_files(self) -> bool:
        """Whether the compose step writes `captions_srt` and `captions_vtt` (the outputs to declare):
        sidecar captions are on and a scene is captioned. The files are written even when the
        speech yields no words (then they hold no cues)."""
        return self.options.captions.sidecar and bool(self.captioned_scenes())


class MatteOptions(StrictModel):
    """The matte step's options: which model cuts the person out of scene `scene`'s video."""

    model: MatteModelId = "lite-matte"
    scene: int = Field(ge=0, lt=MAX_SCENES)


def scene_role(index: int, what: str) -> str:
    """A compose task's input role for scene `index`: `video` (the engine's render), `media` (an
    upload), `words`, `mask`, `background`, `music`, `photo`. The composition's music is `music`."""
    return f"scene_{index}_{what}"


COMPOSE_OUTPUTS: dict[str, str] = {
    "video": "video.mp4",
    "thumbnail": "thumbnail.jpg",
    "captions_srt": "captions.srt",
    "captions_vtt": "captions.vtt",
    "preview": "preview.webp",
    "video_webm": "video.webm",
    "video_mov": "video.mov",
}
"""The compose step's output roles → work file names; plus `scene_thumbnail_<i>` → scene-<i>.jpg.
Captions appear when the composition has speech and sidecar captions; the WebM and MOV files with
alpha only when options.transparent."""


def scene_thumbnail_role(index: int) -> str:
    return f"scene_thumbnail_{index}"


def compose_output_names(options: ComposeOptions) -> dict[str, str]:
    """The outputs a compose task asks for (role → work file name), decided from its options alone
    so the pipeline (which asks) and the compositor (which writes them all) agree: the video, its
    thumbnail and animated preview, one thumbnail per scene; SRT and VTT when sidecar captions are
    on and some captioned scene has words (a voice step's timings) or a transcript; the WebM and
    MOV with alpha when options.transparent."""
    names = {role: COMPOSE_OUTPUTS[role] for role in ("video", "thumbnail", "preview")}
    captioned = any(s.scene.captions and (s.words or s.scene.transcript is not None) for s in options.scenes)
    if options.options.captions.sidecar and captioned:
        names.update({role: COMPOSE_OUTPUTS[role] for role in ("captions_srt", "captions_vtt")})
    if options.options.transparent:
        names.update({role: COMPOSE_OUTPUTS[role] for role in ("video_webm", "video_mov")})
    for index in range(len(options.scenes)):
        names[scene_thumbnail_role(index)] = f"scene-{index}.jpg"
    return names


JobRequest = Annotated[
    AvatarRequest | VoiceRequest | VideoRequest | CompositionRequest, Field(discriminator="task")
]
"""Any native job request, told apart by `task`."""
JOB_REQUEST_ADAPTER: TypeAdapter[AvatarRequest | VoiceRequest | VideoRequest | CompositionRequest] = (
    TypeAdapter(JobRequest)
)
