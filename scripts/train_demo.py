"""Train the book's demo model: a tiny causal Llama with RoPE that learns to copy.

Each training sequence is `<bos> x1 ... xn | x1 ... xn`: random letters, a separator, then the
same letters again. Predicting the second half needs a *previous-token head* (a positional head:
each token looks one step back, so a token knows what preceded it) and an *induction head* (find
the earlier occurrence of the current token and copy what followed it). Both form within a few
thousand steps of a 2-layer model, which gives the book attention worth looking at.

Writes src/attnviz/demo_model/: config.json + model.safetensors (the model) and the tokenizer files,
all loadable offline with from_pretrained. Seeded; about 2-4 minutes on 2 CPU cores.

    .venv/bin/python scripts/train_demo.py [--steps 3000]
"""

import argparse
import json
import string
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

OUT = Path(__file__).resolve().parent.parent / "src" / "attnviz" / "demo_model"
SPECIAL = ["<pad>", "<bos>", "|"]
LETTERS = list(string.ascii_lowercase)


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIAL + LETTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", unk_token="<pad>")


def batch(tokenizer, size: int, generator: torch.Generator, min_len: int = 6, max_len: int = 20) -> torch.Tensor:
    """Copy sequences, right-padded to one length; padding is ignored by the loss (label -100)."""
    bos, sep, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("<bos>", "|", "<pad>"))
    first_letter = len(SPECIAL)
    rows = []
    for _ in range(size):
        n = int(torch.randint(min_len, max_len + 1, (1,), generator=generator))
        letters = torch.randint(first_letter, first_letter + len(LETTERS), (n,), generator=generator)
        rows.append(torch.cat([torch.tensor([bos]), letters, torch.tensor([sep]), letters]))
    width = max(len(r) for r in rows)
    return torch.stack([torch.cat([r, torch.full((width - len(r),), pad)]) for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=None,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    model.train()
    for step in range(args.steps):
        ids = batch(tokenizer, 32, generator)
        labels = ids.masked_fill(ids == tokenizer.pad_token_id, -100)
        loss = model(ids, attention_mask=(ids != tokenizer.pad_token_id).long(), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - start:6.1f} s", flush=True)
    seconds = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        ids = batch(tokenizer, 256, torch.Generator().manual_seed(123), 10, 10)  # 10 letters each
        predicted = model(ids).logits.argmax(-1)
    second_half = slice(12, 21)  # predictions of letters 2-10 of the copy
    accuracy = (predicted[:, second_half] == ids[:, 13:22]).float().mean().item()
    print(f"copy accuracy on the second half: {accuracy:.3f}")

    OUT.mkdir(parents=True, exist_ok=True)
    model.config.attn_implementation = None
    model.save_pretrained(OUT, safe_serialization=True)
    tokenizer.save_pretrained(OUT)
    (OUT / "training.json").write_text(
        json.dumps(
            {
                "steps": args.steps,
                "seed": args.seed,
                "seconds": round(seconds, 1),
                "copy_accuracy": round(accuracy, 4),
                "torch": torch.__version__,
                "final_loss": round(loss.item(), 4),
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    size = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"trained in {seconds:.0f} s; wrote {OUT} ({size / 2**20:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
