"""Use a trained model: ``lrnn generate RUN --prompt "..."`` samples text, ``lrnn score RUN FILE`` reports the per-token
loss and perplexity of a text file. Both need only the checkpoint: the model is rebuilt by
``LitLanguageModel.load_from_checkpoint`` and the vocabulary travels in the checkpoint (no corpus is read).

Text is tokenized as in training: word level splits on whitespace and ends every line with ``<eos>``, unknown words
become ``<unk>``; char level takes characters. Positions follow the training condition: with stream batching the
position restarts every ``seq_len`` steps (the training window; the state is carried across), with sentence batching
it counts from the sentence start and the state starts from zero at every sentence (``<eos>`` is the first input).

Python::

    lm = Trained.load("runs/tied_ptb/version_0")          # or a .ckpt path; ckpt="last" for the last checkpoint
    lm.generate("the market", max_tokens=20, seed=0)      # -> str
    lm.score_text(open("my.txt").read())                  # -> {"tokens", "loss", "ppl", "unk"}
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from lrnn.data.corpora import resolve
from lrnn.data.vocab import EOS, UNK, Vocabulary, split_row
from lrnn.lightning.lm import LitLanguageModel, instantiate_core


class UseError(ValueError):
    """A bad run, checkpoint, prompt or file: the CLI prints it as one line and exits with status 2."""


def checkpoint_path(run: str | Path, ckpt: str = "best") -> Path:
    """A run folder (``runs/<name>/version_<k>``: its ``checkpoints/{best,last}.ckpt``) or a ``.ckpt`` file."""
    run = Path(run)
    path = run / "checkpoints" / f"{ckpt}.ckpt" if run.is_dir() else run
    if not path.is_file():
        raise UseError(f"no checkpoint {path} (give a run folder runs/<name>/version_<k> or a .ckpt file)")
    return path


@dataclass
class Trained:
    """A trained language model with its vocabulary and the positions it was trained with."""

    model: LitLanguageModel
    vocab: Vocabulary
    level: str  # "word" or "char"
    window: int | None  # stream batching: the training seq_len (positions restart every window); None: sentences

    @classmethod
    def load(cls, run: str | Path, ckpt: str = "best", device: str | None = None) -> Trained:
        path = checkpoint_path(run, ckpt)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception as err:  # a truncated or foreign file
            raise UseError(f"cannot read checkpoint {path}: {err}") from None
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        vocab = next((v["vocab"] for v in checkpoint.values() if isinstance(v, dict) and "vocab" in v), None)
        if vocab is None:
            raise UseError(f"{path} holds no vocabulary (a model trained on synthetic data has no text to use)")
        extra = {}
        if not (checkpoint.get("hyper_parameters") or {}).get("core"):  # written before the core was kept in it
            config = path.parent.parent / "config.yaml"
            if not config.is_file():
                raise UseError(f"{path} does not describe its core and there is no {config} beside it")
            extra["core"] = instantiate_core(yaml.safe_load(config.read_text())["model"]["core"])
        model = LitLanguageModel.load_from_checkpoint(path, map_location=device or "cpu", weights_only=False, **extra)
        spec = resolve(str(data.get("dataset", "")), data.get("config"), data.get("text_column"), data.get("level"))
        window = None if data.get("batching") == "sentence" else int(data.get("seq_len") or 35)
        return cls(model.eval(), Vocabulary.from_state_dict(vocab), spec.level, window)

    # ---- tokens -------------------------------------------------------------------------------------------------
    def encode(self, text: str) -> tuple[torch.Tensor, int]:
        """Token ids [N] of ``text`` (lines tokenized as in training) and how many were unknown."""
        unk = self.vocab.stoi[UNK]
        tokens = [t for line in text.splitlines() for t in split_row(line, self.level)]
        ids = [self.vocab.stoi.get(t, unk) for t in tokens]
        return torch.tensor(ids, dtype=torch.long), sum(t not in self.vocab.stoi for t in tokens)

    def decode(self, ids: list[int]) -> str:
        words = self.vocab.decode(ids)
        if self.level == "char":
            return "".join(words)
        return " ".join(words).replace(f" {EOS} ", "\n").replace(EOS, "\n")

    def _offset(self, position: int) -> int:
        return position % self.window if self.window else position

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- scoring ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def score_ids(self, ids: torch.Tensor) -> tuple[float, int]:
        """Summed NLL (nats) of ``ids[1:]`` given the tokens before (sentence models: of every token of every
        sentence, ``<eos>`` as its first input) and the number of tokens scored."""
        eos = self.vocab.stoi.get(EOS)
        total, count = 0.0, 0
        if self.window is None:  # sentences: each from a zero state, <eos> before it
            ends = (ids == eos).nonzero().flatten().tolist() if eos is not None else []
            starts = [0, *[e + 1 for e in ends]]
            for a, b in zip(starts, [*[e + 1 for e in ends], len(ids)], strict=True):
                if b > a:
                    inputs = torch.cat([torch.tensor([eos]), ids[a : b - 1]])
                    total += self._nll(inputs, ids[a:b], None, 0)[0]
                    count += b - a
            return total, count
        state = None
        inputs, targets = ids[:-1], ids[1:]
        for start in range(0, len(inputs), self.window):  # windows of the training length, state carried
            nll, state = self._nll(inputs[start : start + self.window], targets[start : start + self.window], state, 0)
            total += nll
            count += len(targets[start : start + self.window])
        return total, count

    def _nll(self, inputs: torch.Tensor, targets: torch.Tensor, state: Any, offset: int) -> tuple[float, Any]:
        device = self._device
        logits, state = self.model(inputs.to(device)[None], state, offset)
        nll = F.cross_entropy(logits[0].float(), targets.to(device), reduction="sum")
        return float(nll), state

    def score_text(self, text: str) -> dict[str, Any]:
        """``{"tokens", "loss" (mean NLL per token, nats), "ppl", "unk"}`` of a text."""
        ids, unk = self.encode(text)
        if len(ids) < 2:
            raise UseError("the text has fewer than 2 tokens: nothing to score")
        total, count = self.score_ids(ids)
        loss = total / count
        return {"tokens": count, "loss": loss, "ppl": math.exp(loss), "unk": unk}

    # ---- sampling -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, prompt: str = "", max_tokens: int = 50, temperature: float = 1.0, top_k: int | None = None, seed: int = 0
    ) -> str:
        """``prompt`` followed by ``max_tokens`` sampled tokens (word level: the prompt is a sentence start)."""
        if max_tokens < 0 or not temperature > 0 or (top_k is not None and top_k < 1):
            raise UseError("need max_tokens >= 0, temperature > 0 and top_k >= 1")
        generator = torch.Generator().manual_seed(seed)
        eos = self.vocab.stoi.get(EOS)
        prompt_ids = self.encode(prompt)[0].tolist() if prompt else []
        if self.level == "word" and prompt_ids:
            prompt_ids = prompt_ids[:-1]  # no <eos> after the prompt: it is continued
        context = ([eos] if eos is not None else []) + prompt_ids
        if not context:
            raise UseError("give a prompt (this char-level model has no <eos> to start from)")
        state, position, out = None, 0, list(prompt_ids)
        logits = None
        for token in context:
            logits, state = self.model(torch.tensor([[token]], device=self._device), state, self._offset(position))
            position += 1
        for _ in range(max_tokens):
            scores = logits[0, -1].float().cpu() / temperature
            if top_k is not None:
                kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
            out.append(token)
            if self.window is None and token == eos:  # sentence models: a new sentence from a zero state
                state, position = None, 0
            logits, state = self.model(torch.tensor([[token]], device=self._device), state, self._offset(position))
            position += 1
        return self.decode(out)


# ---- command line ---------------------------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> Trained:
    if not args.run:
        raise UseError("no run given (RUN=runs/<name>/version_<k> or a .ckpt path)")
    return Trained.load(args.run, args.ckpt, args.device)


def generate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lrnn generate", description="Sample text from a trained run.")
    parser.add_argument("run", help="run folder runs/<name>/version_<k> or a .ckpt file")
    parser.add_argument("--prompt", default="", help="text to continue (default: a sentence start)")
    parser.add_argument("--max_tokens", type=int, default=50, help="tokens to sample (default 50)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1)")
    parser.add_argument("--top_k", type=int, default=None, help="sample among the k likeliest tokens only")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--ckpt", default="best", help="best | last (in a run folder; default best)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default cpu)")
    args = parser.parse_args(argv)
    try:
        trained = _load(args)
        print(trained.generate(args.prompt, args.max_tokens, args.temperature, args.top_k, args.seed))
    except UseError as err:
        print(f"lrnn generate: error: {err}", file=sys.stderr)
        return 2
    return 0


def score_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lrnn score", description="Per-token loss and perplexity of a text file.")
    parser.add_argument("run", help="run folder runs/<name>/version_<k> or a .ckpt file")
    parser.add_argument("file", help="a UTF-8 text file")
    parser.add_argument("--ckpt", default="best", help="best | last (in a run folder; default best)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default cpu)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        path = Path(args.file)
        if not path.is_file():
            raise UseError(f"no file {args.file}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UseError(f"{path}: not UTF-8 text at byte offset {err.start}") from None
        result = _load(args).score_text(text)
    except UseError as err:
        print(f"lrnn score: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"file": str(path), **result}))
    else:
        print(
            f"{path}: {result['tokens']} tokens, loss {result['loss']:.4f} nats/token, perplexity {result['ppl']:.2f}"
            f" ({result['unk']} unknown tokens scored as <unk>)"
        )
    return 0
