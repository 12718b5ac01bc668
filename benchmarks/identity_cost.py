"""Cost of a model's content identity (harness.identity) on a first and a repeated call.

What it does:

1. writes a synthetic checkpoint directory (``--mb`` MB of weights in ``--shards`` safetensors-named files,
   plus config, tokenizer and chat-template files) into a temp folder, with an empty memo in a temp cache dir;
2. times, in one process: a plain sha256 of every file (the reference: what hashing costs without a memo),
   the first ``model_identity("hf", {"pretrained": DIR})`` (cold memo: reads every byte once), and the
   repeated call (memo hit on (path, size, mtime, inode): stats only);
3. prints each time, the first-call / reference ratio (about 1: the memo adds nothing measurable) and the
   repeated / first ratio (the saving a second command gets; a large checkpoint is hashed once).

Run: ``.venv/bin/python benchmarks/identity_cost.py [--mb 512] [--shards 4] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_checkpoint(folder: Path, mb: int, shards: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    per = max(1, mb // shards)
    for i in range(shards):
        with (folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors").open("wb") as fh:
            for k in range(per):
                fh.write(block[k % 7 :] + block[: k % 7])
    (folder / "config.json").write_text('{"model_type": "qwen2"}\n')
    (folder / "tokenizer.json").write_text('{"version": "1.0"}\n' + "x" * 200_000)
    (folder / "tokenizer_config.json").write_text("{}\n")
    (folder / "chat_template.jinja").write_text("{{ messages }}\n")
    (folder / "training_args.bin").write_bytes(b"not part of the identity")
    return sum(p.stat().st_size for p in folder.iterdir())


def plain_sha256(folder: Path) -> float:
    t0 = time.perf_counter()
    for p in sorted(folder.iterdir()):
        digest = hashlib.sha256()
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 16):
                digest.update(chunk)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=512, help="megabytes of synthetic weights (default 512)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5, help="repeated calls to time (the median is printed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DITTO_BENCH_CACHE_DIR"] = str(Path(tmp) / "cache")
        from harness.identity import default_memo, model_identity

        ckpt = Path(tmp) / "ckpt"
        size = write_checkpoint(ckpt, args.mb, args.shards)
        reference = plain_sha256(ckpt)
        memo = default_memo()
        t0 = time.perf_counter()
        first = model_identity("hf", {"pretrained": str(ckpt)}, memo=memo)
        memo.save()
        t_first = time.perf_counter() - t0
        read_first = memo.hashed_bytes
        reference = min(reference, plain_sha256(ckpt))  # both page-cache warm: the fairer of the two
        times = []
        for _ in range(args.repeats):
            memo2 = default_memo()  # a new command: the memo comes from disk
            t0 = time.perf_counter()
            again = model_identity("hf", {"pretrained": str(ckpt)}, memo=memo2)
            times.append(time.perf_counter() - t0)
            assert again["id"] == first["id"] and memo2.hashed_bytes == 0
        times.sort()
        t_again = times[len(times) // 2]
        n_files = len(list(ckpt.iterdir()))
        print(f"checkpoint: {size / 1e6:.0f} MB in {n_files} files; id {first['id'][:23]}...")
        print(f"reference (plain sha256 of every file): {reference * 1e3:9.1f} ms")
        print(f"first call (cold memo, {read_first / 1e6:.0f} MB read): {t_first * 1e3:9.1f} ms  "
              f"ratio to reference {t_first / reference:.2f}")
        print(f"repeated call (memo from disk, 0 bytes read): {t_again * 1e3:9.3f} ms  "
              f"ratio to first {t_again / t_first:.5f} ({t_first / t_again:.0f}x faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
