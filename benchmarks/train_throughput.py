"""Training throughput: LaDa's ``sft`` loop vs Hugging Face ``transformers.Trainer``.

Same tiny model (zoo ``slm-m``, same init), same synthetic word problems (~150 tokens each),
same batch size, max length, lr schedule and loss (target tokens + EOS only). Both count
the non-pad tokens of the examples they process and exclude tokenisation from the timing;
each is warmed up first, then the loops are timed alternately and the best run is kept.

    python benchmarks/train_throughput.py [--steps 60] [--zoo]

``--zoo`` also times ``sft`` for every zoo model.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from lada.models import ZOO, build_model, build_tokenizer, count_params
from lada.train.batching import encode_pairs
from lada.train.loop import OptimConfig
from lada.train.sft import sft

NAMES = ["Max", "Ann", "Lena", "Omar", "Kai", "Sofia", "Ravi", "Mia"]
ITEMS = ["cards", "apples", "stickers", "marbles", "coins", "books"]


def word_problem(rng: random.Random) -> tuple[str, str]:
    """A GSM8K-like multi-step problem: (prompt, target) in LaDa's text format."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(5, 40)
    sentences = [f"{name} has {value} {item}."]
    steps = []
    for _ in range(rng.randint(3, 8)):
        n = rng.randint(1, 20)
        if rng.random() < 0.5 or value < n:
            sentences.append(f"Then {name} buys {n} more {item} at the market.")
            steps.append(f"Step: {value}+{n}={value + n}")
            value += n
        else:
            sentences.append(f"Then {name} gives {n} {item} to a friend.")
            steps.append(f"Step: {value}-{n}={value - n}")
            value -= n
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences) + "\n", "\n".join(steps + [f"Answer: {value}"])


def run_ours(model, tok, prompts, targets, cfg: OptimConfig) -> tuple[float, int]:
    """Wall time of one ``sft`` training loop and its non-pad tokens (tokenisation excluded)."""
    stats = sft(model, tok, prompts, targets, cfg)
    return stats.seconds, stats.tokens


def run_hf(
    model,
    tok,
    prompts,
    targets,
    cfg: OptimConfig,
    group_by_length: bool,
    bf16: bool = False,
    compile: bool = False,
) -> tuple[float, int]:
    """Wall time of one ``Trainer.train()`` on pre-tokenised data and its non-pad tokens
    (``bf16``: the Trainer's own bf16 mixed precision; ``compile``: its ``torch_compile``, the
    model wrapped in ``torch.compile`` with the inductor backend)."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    encoded = encode_pairs(tok, prompts, targets, cfg.max_length)
    data = [
        {"input_ids": ids, "labels": [-100] * n + ids[n:], "attention_mask": [1] * len(ids)}
        for ids, n in encoded
    ]
    padder = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    tokens = [0]

    def collate(features):
        batch = padder(features)
        tokens[0] += int(batch["attention_mask"].sum())
        return batch

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=cfg.batch_size,
            max_steps=cfg.max_steps,
            learning_rate=cfg.lr,
            weight_decay=cfg.weight_decay,
            adam_beta1=cfg.betas[0],
            adam_beta2=cfg.betas[1],
            warmup_steps=cfg.warmup_steps,
            lr_scheduler_type="cosine",
            max_grad_norm=cfg.grad_clip,
            seed=cfg.seed,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            train_sampling_strategy="group_by_length" if group_by_length else "random",
            remove_unused_columns=False,
            bf16=bf16,
            torch_compile=compile,
            use_cpu=bf16 and not torch.cuda.is_available(),  # bf16 autocast on CPU needs it
        )
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0, tokens[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per loop (best kept)")
    parser.add_argument("--zoo", action="store_true", help="also time sft for every zoo model")
    parser.add_argument(
        "--no-group-by-length", action="store_true", help="skip the HF group_by_length run"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = random.Random(0)
    pairs = [word_problem(rng) for _ in range(args.samples)]
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    tok = build_tokenizer([p + t for p, t in pairs], vocab_size=512)
    cfg = OptimConfig(batch_size=args.batch_size, max_steps=args.steps, max_length=320)
    lengths = [len(ids) for ids, _ in encode_pairs(tok, prompts, targets, cfg.max_length)]
    console = Console()
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, vocab {len(tok)}, "
        f"mean length {sum(lengths) / len(lengths):.0f} tokens (min {min(lengths)}, max {max(lengths)}), "
        f"batch {cfg.batch_size}, {cfg.max_steps} timed steps"
    )

    loops = ["lada sft (length buckets)", "HF Trainer"]
    if not args.no_group_by_length:
        loops.append("HF Trainer group_by_length")
    models = {name: build_model("slm-m", tok, seed=0) for name in loops}

    def run(name: str, c: OptimConfig) -> tuple[float, int]:
        if name.startswith("lada"):
            return run_ours(models[name], tok, prompts, targets, c)
        return run_hf(models[name], tok, prompts, targets, c, name.endswith("group_by_length"))

    warmup = OptimConfig(**{**cfg.__dict__, "max_steps": 5})
    for name in loops:
        run(name, warmup)
    best: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeats):  # alternate the loops; keep each one's best run
        for name in loops:
            seconds, tokens = run(name, cfg)
            if name not in best or tokens / seconds > best[name][1] / best[name][0]:
                best[name] = (seconds, tokens)

    table = Table(title=f"train throughput, zoo slm-m, best of {args.repeats} (non-pad tokens/s)")
    for col in ("loop", "seconds", "tokens", "tok/s"):
        table.add_column(col, justify="left" if col == "loop" else "right")
    for name, (seconds, tokens) in best.items():
        table.add_row(name, f"{seconds:.2f}", f"{tokens:,}", f"{tokens / seconds:,.0f}")
    console.print(table)
    rate = {name: tokens / seconds for name, (seconds, tokens) in best.items()}
    console.print(
        f"ratio ours / HF Trainer: [bold]{rate['lada sft (length buckets)'] / rate['HF Trainer']:.2f}[/bold]"
    )

    if args.zoo:
        zoo = Table(title=f"lada sft throughput per zoo model (batch {cfg.batch_size})")
        for col in ("model", "family", "params", "tok/s", "s/step"):
            zoo.add_column(col, justify="left" if col in ("model", "family") else "right")
        for name, spec in ZOO.items():
            model = build_model(spec, tok, seed=0)
            run_ours(model, tok, prompts, targets, warmup)
            seconds, tokens = run_ours(model, tok, prompts, targets, cfg)
            zoo.add_row(
                name,
                spec.family,
                f"{count_params(model):,}",
                f"{tokens / seconds:,.0f}",
                f"{seconds / cfg.max_steps:.3f}",
            )
        console.print(zoo)


if __name__ == "__main__":
    main()
