"""Job requests: what a client asks the pipeline to make.

Three task kinds share one envelope (`task`, `job_id`, `inputs`, `options`, `output`, `notify`,
`callback_id`, `metadata`) and are told apart by `task`, so one JSON Schema describes every entry
point (S3 manifest, REST API, direct Step Functions input). `parse_job_request` (in parse.py) is
the single door in: it also accepts the MultiTalk API v0 manifest (the original MultiTalk API's S3
manifest shape), and turns every failure into one `TalkstackError(INVALID_REQUEST)` whose one-line
message names the offending field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from talkstack.contract.consent import ConsentAttestation
from talkstack.contract.fields import (
    EVENT_TYPES,
    MAX_AVATAR_SECONDS,
    AvatarModelId,
    Box,
    CallbackId,
    Emotion,
    EvenSize,
    EventType,
    Filename,
    JobId,
    KeyPrefix,
    Language,
    MediaRef,
    Metadata,
    Prompt,
    S3Bucket,
    Seed,
    SpeechText,
    StrictModel,
    TaskKind,
    VideoModelId,
    VoiceModelId,
    WebhookUrl,
    check_size_pair,
    dedupe,
    not_blank,
)

# ---------------------------------------------------------------------------------------------
# Shared envelope
# ---------------------------------------------------------------------------------------------


class OutputSpec(StrictModel):
    """Where results go. Keys are predictable: `{prefix}/{filename}` (see `JobRequestBase.output_key`)."""

    bucket: S3Bucket | None = None
    """Output bucket; defaults to the pipeline's output bucket."""
    prefix: KeyPrefix | None = None
    """Folder for every output of the job; "" is the bucket root. Defaults to the job id."""
    filename: Filename | None = None
    """Main output file name: .mp4 (avatar, video) or .wav/.mp3 (voice); default video.mp4 / speech.wav."""
    unique_suffix: bool = False
    """Append the job id as a last folder ({prefix}/{job_id}/…) so reruns never overwrite."""


class NotifySpec(StrictModel):
    """Per-job notifications. Every event also goes to the pipeline's SNS topic regardless."""

    webhook_url: WebhookUrl | None = None
    """https URL that receives signed POSTs (http only for loopback hosts)."""
    events: Annotated[list[EventType], AfterValidator(dedupe), Field(min_length=1)] = Field(
        default_factory=lambda: list(EVENT_TYPES)
    )
    """Event types sent to the webhook; default all."""

    def wants(self, event_type: str) -> bool:
        return self.webhook_url is not None and event_type in self.events


class JobRequestBase(StrictModel):
    """Fields every task shares; subclasses add `task`, `inputs` and `options`."""

    _extensions: ClassVar[tuple[str, ...]] = (".mp4",)
    if TYPE_CHECKING:  # declared by each task's subclass
        inputs: Any
        options: Any

    task: TaskKind
    """avatar, voice or video: selects the shape of `inputs` and `options`."""
    job_id: JobId | None = None
    """Optional client-chosen id; the same id never starts a second job."""
    output: OutputSpec = Field(default_factory=OutputSpec)
    notify: NotifySpec = Field(default_factory=NotifySpec)
    callback_id: CallbackId | None = None
    """Echoed in every event and webhook."""
    metadata: Metadata = Field(default_factory=dict)
    """Client key/value pairs (≤16, keys ≤64 and values ≤256 characters), echoed in every event."""

    @model_validator(mode="after")
    def _check_filename_extension(self) -> JobRequestBase:
        name = self.output.filename
        if name is not None and not name.lower().endswith(self._extensions):
            raise ValueError(
                f"output.filename: must end with {' or '.join(self._extensions)} for {self.task} jobs"
                f" (got {name!r})"
            )
        return self

    @property
    def output_filename(self) -> str:
        return self.output.filename or "video.mp4"

    @property
    def primary_model(self) -> str:
        return self.options.model

    @property
    def needs_voice_step(self) -> bool:
        return False

    @property
    def worker_steps(self) -> tuple[str, ...]:
        """Engine steps this job runs, in order (Stitch/Finalize are not engine steps)."""
        return (self.task,)

    def media_inputs(self) -> dict[str, MediaRef]:
        """Every media input by field name, for validation and pre-signing."""
        inputs = self.inputs
        return {
            name: value
            for name in type(inputs).model_fields
            if isinstance(value := getattr(inputs, name), MediaRef)
        }

    def referenced_media(self) -> dict[str, MediaRef]:
        """Every media object the request names, by field path (`inputs.image`, `consent.clip`): the
        engines' inputs and the consent clip, which is checked and kept but never sent to a worker."""
        refs = {f"inputs.{name}": ref for name, ref in self.media_inputs().items()}
        consent: ConsentAttestation | None = getattr(self, "consent", None)
        if consent is not None and consent.clip is not None:
            refs["consent.clip"] = consent.clip
        return refs

    def with_media(self, refs: dict[str, MediaRef]) -> Self:
        """A copy with the media at these field paths (as `referenced_media` names them) replaced."""
        inputs = {p.removeprefix("inputs."): ref for p, ref in refs.items() if p.startswith("inputs.")}
        update: dict[str, Any] = {}
        if inputs:
            update["inputs"] = self.inputs.model_copy(update=inputs)
        if "consent.clip" in refs:
            consent: ConsentAttestation = getattr(self, "consent")  # noqa: B009 (subclasses declare it)
            update["consent"] = consent.model_copy(update={"clip": refs["consent.clip"]})
        return self.model_copy(update=update) if update else self

    def sibling_key(self, job_id: str, role: Literal["thumbnail", "result"]) -> str:
        """Key of the thumbnail or result.json published beside the main output: `thumbnail.jpg` and
        `result.json`, or `<stem>.thumbnail.jpg` / `<stem>.result.json` when output.filename is set
        (so jobs sharing a prefix with distinct file names never overwrite each other's)."""
        name = "thumbnail.jpg" if role == "thumbnail" else "result.json"
        if self.output.filename is not None:
            name = f"{self.output.filename.rpartition('.')[0]}.{name}"
        return self.output_key(job_id, name)

    def output_key(self, job_id: str, name: str | None = None) -> str:
        """Key of the main output (or of a sibling file `name`) in the output bucket."""
        prefix = job_id if self.output.prefix is None else self.output.prefix
        if self.output.unique_suffix and self.output.prefix is not None:
            prefix = f"{prefix}/{job_id}" if prefix else job_id
        filename = name or self.output_filename
        return f"{prefix}/{filename}" if prefix else filename


# ---------------------------------------------------------------------------------------------
# avatar
# ---------------------------------------------------------------------------------------------


class AvatarInputs(StrictModel):
    """A photo driven by speech: give `audio`, or `text` to synthesise the speech first."""

    image: MediaRef
    """Photo of the speaker(s)."""
    audio: MediaRef | None = None
    """Speech audio (first speaker)."""
    text: SpeechText | None = None
    """Text to speak; runs a voice step before the avatar step."""
    second_audio: MediaRef | None = None
    """Second speaker's audio, for two-speaker avatars (see options.audio_type)."""
    reference_voice: MediaRef | None = None
    """Voice to clone when speaking `text`."""

    @model_validator(mode="after")
    def _one_driver(self) -> AvatarInputs:
        if self.audio is None and self.text is None:
            raise ValueError("give either audio or text (neither was given)")
        if self.audio is not None and self.text is not None:
            raise ValueError("give either audio or text, not both")
        if self.second_audio is not None and self.audio is None:
            raise ValueError("second_audio needs audio (two-speaker avatars are audio-driven)")
        if self.reference_voice is not None and self.text is None:
            raise ValueError("reference_voice only applies with text")
        return self


class AvatarVoiceOptions(StrictModel):
    """Voice step settings for a text-driven avatar (speed and emotion come from the avatar options)."""

    model: VoiceModelId = "lite-voice"
    language: Language = "en"
    pitch: Annotated[float, Field(ge=-12, le=12)] = 0.0
    """Semitones."""
    exaggeration: Annotated[float, Field(ge=0, le=2)] | None = None


class AvatarOptions(StrictModel):
    model: AvatarModelId = "lite-avatar"
    resolution: Literal["480p", "720p"] | None = None
    """Short side of the output, aspect from the photo; default 480p. Exclusive with width/height."""
    width: EvenSize | None = None
    height: EvenSize | None = None
    fps: Annotated[int, Field(ge=1, le=60)] = 25
    max_duration_s: Annotated[float, Field(gt=0, le=MAX_AVATAR_SECONDS)] | None = None
    """Cut the video (and the audio driving it) at this many seconds."""
    prompt: Prompt | None = None
    """Scene / motion description for models that take one."""
    seed: Seed | None = None
    turbo: bool = False
    """Faster, slightly lower-quality sampling where the model supports it (MultiTalk/InfiniteTalk: a
    lightx2v step-distillation LoRA, 4 steps, text guidance 1)."""
    steps: Annotated[int, Field(ge=1, le=100)] | None = None
    """Sampling steps; default the model's own (GPU avatars: 40, or 4 with turbo)."""
    text_guidance: Annotated[float, Field(ge=1, le=20)] | None = None
    """How strongly the prompt steers the video (GPU avatars: default 5, or 1 with turbo)."""
    audio_guidance: Annotated[float, Field(ge=1, le=20)] | None = None
    """How strongly the speech drives the lips (GPU avatars: default 4, or 2 with turbo)."""
    teacache: bool | None = None
    """Skip near-identical denoising steps (about 2× faster, small quality cost); default on unless turbo."""
    apg: bool | None = None
    """Adaptive projected guidance: less colour drift in long videos; default on past 15 s of audio."""
    long_audio: Literal["sequential", "parallel"] = "sequential"
    """Speech longer than the parallel chunk limit: `sequential` renders one continuous stream (best
    continuity, slowest); `parallel` cuts it at pauses, renders the chunks at once on several GPUs
    and crossfades them (lowest latency, the head pose may reset at each cut)."""
    emotion: Emotion | None = None
    """Expression hint; also the voice step's emotion for text-driven avatars."""
    speed: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    """Speech rate of the voice step; text-driven avatars only."""
    audio_type: Literal["add", "para"] | None = None
    """Two speakers: "add" = in turn (default), "para" = at the same time."""
    speaker_boxes: Annotated[list[Box], Field(min_length=2, max_length=2)] | None = None
    """Where each speaker is in the photo, first speaker first."""
    voice: AvatarVoiceOptions | None = None
    """Voice step settings (text-driven avatars only)."""

    @model_validator(mode="after")
    def _check_size(self) -> AvatarOptions:
        check_size_pair(self.width, self.height, "resolution", self.resolution is not None)
        return self

    @property
    def effective_resolution(self) -> str | None:
        """The resolution preset in force, or None when width/height are explicit."""
        return None if self.width is not None else (self.resolution or "480p")


TWO_SPEAKER_INFINITETALK = "infinitetalk renders one speaker; use model 'multitalk' for two speakers"
"""Why inputs.second_audio is refused with infinitetalk (here, and by the engine for a task built
another way). InfiniteTalk's multi-person weights (multi/infinitetalk.safetensors) are a second
14B DiT beside the single-speaker one, and an avatar container loads one pipeline: serving both
would mean another warm GPU pool (or two 14B models in one 80 GB GPU) for what multitalk already
renders."""


class AvatarRequest(JobRequestBase):
    """Talking avatar from a photo plus speech audio, or plus text (voice step, then avatar step)."""

    task: Literal["avatar"]
    inputs: AvatarInputs
    options: AvatarOptions = Field(default_factory=AvatarOptions)
    consent: ConsentAttestation | None = None
    """That the person in `inputs.image` (scope likeness) and, when `inputs.reference_voice` is
    given, the person whose voice it is (scope voice) agreed. Required unless the photo is a bundled
    sample or the operator turned the check off (docs/safety.md)."""

    @model_validator(mode="after")
    def _check_combination(self) -> AvatarRequest:
        text_driven = self.inputs.text is not None
        two_speakers = self.inputs.second_audio is not None
        if not text_driven and self.options.speed != 1.0:
            raise ValueError("options.speed: only applies when inputs.text is given (audio is used as is)")
        if not text_driven and self.options.voice is not None:
            raise ValueError("options.voice: only applies when inputs.text is given")
        if not two_speakers and self.options.audio_type is not None:
            raise ValueError("options.audio_type: needs inputs.second_audio")
        if not two_speakers and self.options.speaker_boxes is not None:
            raise ValueError("options.speaker_boxes: needs inputs.second_audio")
        if two_speakers and self.options.model == "infinitetalk":
            raise ValueError(f"inputs.second_audio: {TWO_SPEAKER_INFINITETALK}")
        if two_speakers and self.options.long_audio == "parallel":
            raise ValueError("options.long_audio: 'parallel' renders one speaker; use 'sequential' for two")
        return self

    @property
    def needs_voice_step(self) -> bool:
        return self.inputs.text is not None

    @property
    def worker_steps(self) -> tuple[str, ...]:
        steps = ("voice", "avatar") if self.needs_voice_step else ("avatar",)
        # A parallel long avatar may end with a stitch step (when its speech needs several chunks).
        return (*steps, "stitch") if self.options.long_audio == "parallel" else steps

    def voice_step_options(self) -> VoiceOptions:
        """Options for the voice step of a text-driven avatar (always WAV, fed to the avatar step)."""
        voice = self.options.voice or AvatarVoiceOptions()
        return VoiceOptions(
            model=voice.model,
            language=voice.language,
            pitch=voice.pitch,
            exaggeration=voice.exaggeration,
            speed=self.options.speed,
            emotion=self.options.emotion,
            format="wav",
        )


# ---------------------------------------------------------------------------------------------
# voice
# ---------------------------------------------------------------------------------------------


class VoiceInputs(StrictModel):
    text: SpeechText
    reference_voice: MediaRef | None = None
    """A few seconds of the voice to clone."""


class VoiceOptions(StrictModel):
    model: VoiceModelId = "lite-voice"
    language: Language = "en"
    speed: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    pitch: Annotated[float, Field(ge=-12, le=12)] = 0.0
    """Semitones."""
    emotion: Emotion | None = None
    """Emotion label or description, for models that take one."""
    exaggeration: Annotated[float, Field(ge=0, le=2)] | None = None
    """Emotional intensity, for models that take one (chatterbox)."""
    format: Literal["wav", "mp3"] = "wav"
    """Output format; inferred from output.filename when only that is given."""


class VoiceRequest(JobRequestBase):
    """Speech from text, optionally in a cloned voice."""

    _extensions: ClassVar[tuple[str, ...]] = (".wav", ".mp3")

    task: Literal["voice"]
    inputs: VoiceInputs
    options: VoiceOptions = Field(default_factory=VoiceOptions)
    consent: ConsentAttestation | None = None
    """That the person whose voice `inputs.reference_voice` is agreed to its cloning (scope voice).
    Required with a reference voice unless it is a bundled sample or the operator turned the check
    off (docs/safety.md)."""

    @model_validator(mode="after")
    def _match_format(self) -> VoiceRequest:
        name = self.output.filename
        if name is None:
            return self
        ext = name.rpartition(".")[2].lower()
        if "format" not in self.options.model_fields_set:
            # ext is .wav or .mp3: the base validator has checked it
            self.options = self.options.model_copy(update={"format": ext})
        elif ext != self.options.format:
            raise ValueError(
                f"output.filename: {name!r} does not match options.format {self.options.format!r}"
            )
        return self

    @property
    def output_filename(self) -> str:
        return self.output.filename or f"speech.{self.options.format}"

    @property
    def needs_voice_step(self) -> bool:
        return True


# ---------------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------------


class VideoInputs(StrictModel):
    prompt: Annotated[Prompt, Field(min_length=1), AfterValidator(not_blank)]
    image: MediaRef | None = None
    """Optional first frame (image-to-video)."""


class VideoOptions(StrictModel):
    model: VideoModelId = "ltx-video"
    aspect: Literal["16:9", "9:16", "1:1"] | None = None
    """Default 16:9. Exclusive with width/height."""
    width: EvenSize | None = None
    height: EvenSize | None = None
    fps: Annotated[int, Field(ge=24, le=30)] = 24
    duration_s: Annotated[float, Field(ge=2, le=60)] = 5.0
    seed: Seed | None = None
    negative_prompt: Annotated[str, Field(max_length=2000)] | None = None
    steps: Annotated[int, Field(ge=1, le=100)] | None = None
    """Sampling steps; default is the model's own (LTX-Video: of the first stage; its refine stage keeps
    its own 4 distilled steps)."""
    turbo: bool = False
    """Faster, softer output where the model has a two-stage recipe (LTX-Video: one pass at the output
    size instead of Lightricks' generate at 2/3 size → upsample the latents 2× → refine); others ignore it."""

    @model_validator(mode="after")
    def _check_size(self) -> VideoOptions:
        check_size_pair(self.width, self.height, "aspect", self.aspect is not None)
        return self


class VideoRequest(JobRequestBase):
    """A short clip from a text prompt, optionally starting from an image."""

    task: Literal["video"]
    inputs: VideoInputs
    options: VideoOptions = Field(default_factory=VideoOptions)
