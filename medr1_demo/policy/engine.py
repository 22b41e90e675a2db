"""The policy engine: loads a Med-R1 policy and answers a question in both modes side by side.

    engine = PolicyEngine.load("yuxianglai117/Med-R1", subfolder="VQA_CT")  # or a local folder
    answers = engine.answer(image, "Which organ is shown?", ["Liver", "Kidney"])
    for partial in engine.stream(image, question, options): ...  # dict: mode -> ModeAnswer
    for finished in engine.complete_many(requests, batch_size=64): ...  # many questions
    answers = engine.answer_many([(image, question), ...])  # many questions, aided, as one request

Run `python -m medr1_demo.policy.engine MODEL IMAGE "question" "A" "B" ...` to answer one question.
"""

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from PIL import Image
from transformers import LogitsProcessorList, StoppingCriteriaList

from medr1_demo.config import DecodingConfig
from medr1_demo.policy import asking, batching, checkpoint, relevance
from medr1_demo.policy.generation import (
    BatchStreamer,
    GenerationError,
    Row,
    RowLimits,
    RowsUpdate,
    generation_config,
    generation_errors,
    until_stop,
)
from medr1_demo.policy.letters import LetterForms, LetterRecorder
from medr1_demo.policy.picture import as_trained, training_size
from medr1_demo.policy.shared_pictures import SharedImageProcessor, share_vision
from medr1_demo.protocol import MODES, Question, user_turn
from medr1_demo.results import ModeAnswer, ModelInfo

logger = logging.getLogger(__name__)


class PolicyEngine:
    """A loaded policy plus its processor; answers Med-R1 questions in thinking and no-thinking.

    What it does: formats the question with `protocol`, renders the chat template, lets the
    processor resize the image (the checkpoint's min/max pixels decide the resolution), generates
    all modes in ONE batched, left-padded `generate` call (each row stopped at its own token
    limit), and reads the outputs with `protocol.parse_output`.

    What it does not know: Gradio, HTTP, files or DICOM (it takes a PIL image and strings), users,
    sessions or queues. It never logs question text or images.

    Concurrency: one `threading.Lock` serialises generation on the model, so concurrent callers
    each get exactly the result they would get alone (the app's Gradio queue also limits
    concurrency). A streaming call holds the lock until its generation ends, in a worker thread;
    if the consumer stops iterating early the generation is cancelled at the next step and the
    lock released.
    """

    def __init__(self, model, processor, info: ModelInfo):
        self.model, self.processor, self.info = model, processor, info
        self.image_size = info.image_size  # the picture it trained on (policy.picture)
        # Held while the model runs outside the shared batch: a request's own generation,
        # a relevance map's forward and backward pass.
        self.lock = threading.Lock()
        self.scheduler = None
        self.letter_forms = LetterForms.of(processor.tokenizer)
        # rows that show one scan (both modes, the order control) prepare and encode it once
        if not isinstance(processor.image_processor, SharedImageProcessor):
            processor.image_processor = SharedImageProcessor(processor.image_processor)
        share_vision(model)
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.stop_ids = set(eos) | {processor.tokenizer.eos_token_id}
        self.pad_id = processor.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = eos[0] if eos else processor.tokenizer.eos_token_id

    @classmethod
    def load(
        cls,
        model: str | None,
        *,
        subfolder: str | None = None,
        adapter: str | None = None,
        device: str = "auto",
        dtype="auto",
        quantization: str | None = None,
        attn_implementation: str = "auto",
        image_size: int | None = None,
    ) -> "PolicyEngine":
        """Load a policy: a folder or hub id (+ sub-folder), optionally with a LoRA adapter.

        `model` may be None with an adapter whose adapter_config.json names its base model; a
        `model` folder that holds only an adapter is treated the same way. `image_size` is the
        square side the policy trained on (None: what its medr1_policy.json records; 0: keep
        pictures as they come).
        """
        adapter_dir = checkpoint.resolve_source(adapter) if adapter else None
        folder = checkpoint.resolve_source(model, subfolder) if model else None
        if folder is not None and not (folder / "config.json").exists() and adapter_dir is None:
            adapter_dir, folder = folder, None  # the folder is an adapter
        base_name = checkpoint.adapter_base(adapter_dir) if adapter_dir else None
        if folder is None:
            if not base_name:
                raise checkpoint.PolicyLoadError("No model given, and no adapter naming its base.")
            folder = checkpoint.resolve_source(base_name)
        has_tokenizer = adapter_dir is not None and (adapter_dir / "tokenizer_config.json").exists()
        processor = checkpoint.load_processor(adapter_dir if has_tokenizer else folder)
        policy = checkpoint.load_model(
            folder,
            device=device,
            dtype=dtype,
            quantization=quantization,
            attn_implementation=attn_implementation,
            adapter=adapter_dir,
        )
        metadata = checkpoint.read_policy_metadata(folder)
        if adapter_dir is not None:
            metadata.update(checkpoint.read_policy_metadata(adapter_dir))
        info = ModelInfo(
            model_id=str(model) if model else str(base_name),
            subfolder=subfolder,
            adapter=str(adapter) if adapter else (str(adapter_dir) if adapter_dir else None),
            base_model=metadata.get("base_model") or base_name,
            trained_mode=metadata.get("mode"),
            description=metadata.get("description"),
            device=str(policy.device),
            dtype=str(policy.dtype).removeprefix("torch."),
            parameters=sum(p.numel() for p in policy.parameters()),
            processor=checkpoint.processor_kind(processor),
            image_size=training_size(metadata, model) if image_size is None else image_size or None,
        )
        return cls(policy, processor, info)

    # ------------------------------------------------------------------------------ generation

    def model_inputs(self, images: list[Image.Image], prompts: list[str]):
        """Model-ready inputs (left-padded) for one image + prompt text per row, on the device.

        Each image is first made the picture the policy trained on (`as_trained`).
        """
        if len(images) != len(prompts) or not prompts:
            raise ValueError("model_inputs needs one image per prompt, and at least one row.")
        texts = [
            self.processor.apply_chat_template(
                user_turn(p), add_generation_prompt=True, tokenize=False
            )
            for p in prompts
        ]
        try:
            made: dict[int, Image.Image] = {}  # rows showing one picture keep sharing it
            for image in images:
                if id(image) not in made:
                    made[id(image)] = as_trained(image, self.image_size)
            pictures = [made[id(image)] for image in images]
            batch = self.processor(text=texts, images=pictures, padding=True, return_tensors="pt")
        except (ValueError, OSError) as error:
            raise GenerationError(
                f"The image could not be prepared for the model: {error}"
            ) from error
        return batch.to(self.model.device)

    def generation_config(self, settings: DecodingConfig, limits: list[int]):
        """`generate`'s settings for a batch whose rows stop at `limits` (the longest decides)."""
        return generation_config(self.model, settings, limits, self.pad_id, self.stop_ids)

    def until_stop(self, tokens: list[int], limit: int) -> list[int]:
        """A row's generated tokens up to and including its first stop token, at most `limit`."""
        return until_stop(tokens, limit, self.stop_ids)

    def decode(self, tokens: list[int]) -> str:
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True)

    def _run(self, rows: list[Row], settings, streamer=None, cancel=None, recorder=None):
        """One batched generate call (the caller holds the lock) -> [(tokens, seconds)] per row.

        `streamer` receives every step (a BatchStreamer); `cancel` ends the batch early;
        `recorder` (a LetterRecorder) keeps the letters' scores of every step.
        """
        limits = [row.limit for row in rows]
        streamer = streamer or BatchStreamer(limits, self.stop_ids)
        cancel = cancel or threading.Event()
        batch = self.model_inputs([row.image for row in rows], [row.prompt for row in rows])
        prompt_length = batch["input_ids"].shape[1]
        if settings.do_sample and settings.seed is not None:
            torch.manual_seed(settings.seed)
        processors = LogitsProcessorList([recorder] if recorder is not None else [])
        with generation_errors(), torch.inference_mode():
            output = self.model.generate(
                **batch,
                generation_config=self.generation_config(settings, limits),
                stopping_criteria=StoppingCriteriaList([RowLimits(prompt_length, limits, cancel)]),
                logits_processor=processors,
                streamer=streamer,
            )
        elapsed = time.perf_counter() - streamer.start
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        results = []
        for row, limit in enumerate(limits):
            tokens = self.until_stop(sequences[row, prompt_length:].tolist(), limit)
            seconds = streamer.finished[row] if streamer.finished[row] is not None else elapsed
            results.append((tokens, seconds))
        return results

    def complete(
        self,
        images: list[Image.Image],
        prompts: list[str],
        *,
        max_new_tokens: int | list[int],
        settings: DecodingConfig | None = None,
    ) -> list[tuple[str, int]]:
        """Batched generation: one (image, `build_prompt` text) per row -> (text, tokens) per row."""
        limits = (
            [max_new_tokens] * len(prompts)
            if isinstance(max_new_tokens, int)
            else list(max_new_tokens)
        )
        if len(limits) != len(prompts) or min(limits, default=1) < 1:
            raise ValueError("max_new_tokens needs one positive limit per prompt.")
        rows = [Row(i, p, n) for i, p, n in zip(images, prompts, limits, strict=True)]
        with self.lock:
            outputs = self._run(rows, settings or DecodingConfig())
        return [(self.decode(tokens), len(tokens)) for tokens, _ in outputs]

    def complete_many(
        self,
        requests: Iterable[tuple[Image.Image, str, int]],
        *,
        batch_size: int = 64,
        settings: DecodingConfig | None = None,
        continuous_batching: bool = True,
    ) -> Iterator[list[tuple[int, str, int]]]:
        """Answer many (image, `build_prompt` text, token limit) requests, read lazily.

        Yields lists of (request index, text, tokens) as rows finish, in no fixed order. With
        `continuous_batching` (and a model `batching.supported`), finished rows leave the batch
        and waiting requests take their places (see `medr1_demo.policy.batching`); otherwise
        requests go in fixed batches, each running until its longest row ends.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        settings = settings or DecodingConfig()
        with self.lock:
            if continuous_batching and batching.supported(self.model):
                yield from batching.complete(self, requests, batch_size, settings)
                return
            numbered = enumerate(requests)
            while chunk := list(itertools.islice(numbered, batch_size)):
                indices, requests_ = zip(*chunk, strict=True)
                outputs = self._run([Row(*request) for request in requests_], settings)
                yield [
                    (i, self.decode(tokens), len(tokens))
                    for i, (tokens, _) in zip(indices, outputs, strict=True)
                ]

    # ------------------------------------------------------------------------------- questions

    def use_scheduler(self, scheduler) -> None:
        """Answer through a shared `Scheduler` (many users, one batch); None: per request."""
        self.scheduler = scheduler

    def generate_rows(
        self, rows: list[Row], settings: DecodingConfig, stream: bool = True
    ) -> Iterator[RowsUpdate]:
        """Growing updates of `rows`, the last one done with each row's recorded letter scores.

        Through the scheduler when there is one (its decoding settings apply), else in one batch
        of this request's own; stopping the iteration early cancels the rows. Without `stream`
        the scheduler sends the final update only.
        """
        if self.scheduler is not None and self.scheduler.running:
            yield from self.scheduler.submit(rows, stream)
            return
        cancel, box = threading.Event(), {}
        streamer = BatchStreamer([row.limit for row in rows], self.stop_ids)
        recorder = LetterRecorder(self.letter_forms.ids, range(len(rows)))

        def work():
            try:
                with self.lock:
                    if cancel.is_set():  # the consumer left while this call waited for the lock
                        return
                    streamer.start = time.perf_counter()
                    box["rows"] = self._run(rows, settings, streamer, cancel, recorder)
            except BaseException as error:  # handed to the consumer, raised there
                box["error"] = error
            finally:
                streamer.updates.put(None)  # wake the consumer even when generate failed early

        worker = threading.Thread(target=work, name="policy-generate", daemon=True)
        worker.start()
        try:
            while (update := streamer.newest()) is not None:
                yield RowsUpdate(*update)
            worker.join()
            if "error" in box:
                error = box["error"]
                if isinstance(error, GenerationError | ValueError):
                    raise error
                raise GenerationError(f"Generation failed: {error}") from error
            tokens = [tokens for tokens, _ in box["rows"]]
            finished = [seconds for _, seconds in box["rows"]]
            steps = [recorder.steps[i] for i in range(len(rows))]
            yield RowsUpdate(tokens, finished, True, steps)
        finally:
            cancel.set()  # a consumer that stopped early ends the generation at its next step
            worker.join()

    def stream(
        self,
        image: Image.Image,
        question: Question | str,
        options: list[str] | None = None,
        modes=MODES,
        settings: DecodingConfig | None = None,
        checks=None,
        maps: bool = False,
    ) -> Iterator[dict[str, ModeAnswer]]:
        """Answer in every mode of `modes` in one batch, yielding growing partial answers.

        `question` is a checked `protocol.Question`, or the question's text with its `options`.
        `checks` chooses the trust-aid controls asked in the same batch (`trust.read_checks`;
        None: the defaults). A mode is `done` once its row stopped; the last yield has every mode
        done, with its option probabilities and checks. With `maps`, one more yield adds each
        mode's relevance map (`policy.relevance`; a map that fails says so in the answer).
        """
        yield from self._ask(image, question, options, modes, settings, checks, True, maps)

    def answer(self, image, question, options=None, modes=MODES, settings=None, checks=None,
               maps: bool = False):  # fmt: skip
        """As `stream`, only the final answers (no partial answers are read): mode -> ModeAnswer."""
        final = None
        for final in self._ask(image, question, options, modes, settings, checks, False, maps):  # noqa: B007
            pass
        return final

    def answer_many(self, cases, modes=MODES, settings=None, checks=None) -> list[dict]:
        """Several (image, `Question`) cases as ONE request: their rows are prefilled and join
        the batch together (a batch of cases costs fewer, larger steps than one request per
        case). Each case's answers are those `answer` gives it: mode -> ModeAnswer."""
        settings = settings or DecodingConfig()
        plans = [asking.plan(image, question, modes, settings, checks) for image, question in cases]
        final = None
        rows = [row for plan in plans for row in plan.rows]
        for final in self.generate_rows(rows, settings, stream=False):  # noqa: B007
            pass
        if final is None or not final.done:
            raise GenerationError("Generation ended without an answer.")
        answers, start = [], 0
        for plan in plans:
            end = start + len(plan.rows)
            steps = final.steps[start:end] if final.steps else None
            part = RowsUpdate(final.tokens[start:end], final.finished[start:end], True, steps)
            answers.append(asking.final_answers(self, plan, part))
            start = end
        return answers

    def _ask(self, image, question, options, modes, settings, checks, partial: bool, maps=False):
        asked = question if isinstance(question, Question) else Question.ask(question, options)
        settings = settings or DecodingConfig()
        plan = asking.plan(image, asked, modes, settings, checks)
        started, failed = time.perf_counter(), None
        try:
            final = yield from self._partials(plan, settings, started, partial)
        except GenerationError as error:
            if not plan.controls:
                raise
            # A control must never cost the answers: ask again without them.
            logger.warning("controls dropped after a failed batch: %s", type(error).__name__)
            sentence = "The checks could not be run; the answers come without them."
            failed = {control.mode: sentence for control in plan.controls}
            plan = plan.main_only()
            final = yield from self._partials(plan, settings, started, partial)
        answers = asking.final_answers(self, plan, final, failed)
        yield answers
        if maps:  # the answers are out first; a map never costs them (policy.relevance)
            yield relevance.with_maps(self, image, asked, answers)

    def _partials(self, plan, settings, started, partial: bool = True):
        """Yields partial answers of `plan`'s rows (when `partial`); returns the final update."""
        for update in self.generate_rows(plan.rows, settings):
            if update.done:
                return update
            if partial:
                yield asking.partial_answers(self, plan, update, time.perf_counter() - started)
        raise GenerationError("Generation ended without an answer.")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Answer one question with a Med-R1 policy.")
    parser.add_argument("model")
    parser.add_argument("image", type=Path)
    parser.add_argument("question")
    parser.add_argument("options", nargs="+")
    parser.add_argument("--subfolder")
    parser.add_argument("--adapter")
    args = parser.parse_args(argv)
    engine = PolicyEngine.load(args.model, subfolder=args.subfolder, adapter=args.adapter)
    answers = engine.answer(Image.open(args.image), args.question, args.options)
    print(json.dumps({m: dataclasses.asdict(a) for m, a in answers.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
