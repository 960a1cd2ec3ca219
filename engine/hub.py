"""GGUF files from the Hugging Face hub, through `huggingface_hub` (resumable downloads, its
progress bar, HF_TOKEN and HF_ENDPOINT honoured): `llamba pull REPO [FILE]`, `REPO:TAG` picking
the file by its quantization as Ollama and llama-server's `-hf repo:Q4_K_M` do, and
`--model hf://REPO/FILE`. Files land in the models folder, under the repository's name."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .gguf_file import SPLIT_NAME

DEFAULT_MODELS_DIR = Path.home() / ".cache" / "llamba" / "models"
DEFAULT_TAG = "Q4_K_M"  # llama-server's default when a repository has several quantizations


class HubError(Exception):
    """The repository or file cannot be had; the message is one line."""


def models_dir(given: str | Path | None) -> Path:
    """The models folder: the one given, else $LLAMBA_MODELS_DIR, else ~/.cache/llamba/models."""
    return Path(given or os.environ.get("LLAMBA_MODELS_DIR") or DEFAULT_MODELS_DIR)


def parse_hf_url(url: str) -> tuple[str, str | None]:
    """hf://OWNER/REPO/FILE (or hf://OWNER/REPO[:TAG]) -> ("OWNER/REPO[:TAG]", FILE or None)."""
    parts = url.removeprefix("hf://").split("/", 2)
    if len(parts) < 2 or not all(parts[:2]):
        raise HubError(f"{url!r}: expected hf://OWNER/REPO/FILE.gguf or hf://OWNER/REPO:TAG")
    return "/".join(parts[:2]), parts[2] if len(parts) == 3 else None


def pick_file(files: list[str], tag: str | None) -> str:
    """The GGUF file of a repository whose name carries `tag` (case-insensitive; the first part
    of a split file), or its only one."""
    ggufs = [f for f in files if f.endswith(".gguf") and (not SPLIT_NAME.search(f) or "-00001-of-" in f)]
    ggufs = [f for f in ggufs if "mmproj" not in f.lower()]  # (vision projectors are not models)
    if not ggufs:
        raise HubError("the repository has no GGUF file")
    wanted = tag or (None if len(ggufs) == 1 else DEFAULT_TAG)
    if wanted is None:
        return ggufs[0]
    matches = [f for f in ggufs if re.search(rf"(^|[-_.]){re.escape(wanted)}([-_.]|$)", Path(f).name, re.I)]
    if not matches:
        raise HubError(f"no GGUF file tagged {wanted} among {', '.join(ggufs)}")
    return matches[0]


def pull(repo: str, filename: str | None, models_dir: Path) -> Path:
    """Downloads `filename` (or the file REPO:TAG names) of `repo` into models_dir/OWNER/REPO/,
    resuming a download cut short; a file already there and unchanged is not fetched again.
    Every part of a split file comes along."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    repo_id, _, tag = repo.partition(":")
    target = models_dir / repo_id
    try:
        if filename is None:
            filename = pick_file(HfApi().list_repo_files(repo_id), tag or None)
        split = SPLIT_NAME.search(filename)
        names = [filename] if not split else [
            SPLIT_NAME.sub(f"-{i:05d}-of-{split.group(2)}.gguf", filename) for i in range(1, int(split.group(2)) + 1)]
        paths = [Path(hf_hub_download(repo_id, name, local_dir=target)) for name in names]
    except HfHubHTTPError as e:
        raise HubError(f"{repo_id}: {str(e).splitlines()[0]}") from None
    return paths[0]
