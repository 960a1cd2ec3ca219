"""Split a GGUF file as llama.cpp's gguf-split does (name-00001-of-0000N.gguf, the metadata in
the first part, `split.*` keys in each), through gguf-py's writer: the test models of split files."""
from __future__ import annotations

from pathlib import Path

from gguf import GGUFReader, GGUFValueType, GGUFWriter


def split_gguf(source: Path, folder: Path, tensors_per_part: int) -> list[Path]:
    """Writes `source` into `folder` in parts of at most `tensors_per_part` tensors; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    reader = GGUFReader(source)
    writer = GGUFWriter(folder / source.name, reader.get_field("general.architecture").contents(),
                        split_max_tensors=tensors_per_part)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # the writer adds these itself
        main = field.types[0]
        writer.add_key_value(field.name, field.contents(), main,
                             sub_type=field.types[-1] if main == GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(folder.glob(f"{source.stem}-*-of-*.gguf"))
