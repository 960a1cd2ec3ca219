"""A model split by gguf-split is opened by its first part: the same tensors, byte for byte, and
the same logits as the whole file; a missing or misnamed part is an error naming it."""
import numpy as np
import pytest

from llamba.engine.gguf_file import GGUFError, GGUFFile
from llamba.engine.loader import LoadedModel
from tests.support import SMOLLM2, loaded, model_path
from tests.support.split import split_gguf


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return split_gguf(model_path(SMOLLM2), tmp_path_factory.mktemp("split"), tensors_per_part=100)


def test_a_split_model_reads_as_the_whole_file(parts):
    whole, split = GGUFFile(model_path(SMOLLM2)), GGUFFile(parts[0])
    assert len(parts) == 3 and [p.path for p in split.parts] == parts
    assert {t.part for t in split.tensors.values()} == {0, 1, 2}
    assert split.tensors.keys() == whole.tensors.keys()
    for name, t in whole.tensors.items():
        s = split.tensors[name]
        assert (s.type, s.shape) == (t.type, t.shape) and np.array_equal(s.data, t.data), name
    assert split.metadata["tokenizer.ggml.tokens"].as_str() == whole.metadata["tokenizer.ggml.tokens"].as_str()
    assert split.size == sum(p.stat().st_size for p in parts)


def test_a_split_model_answers_as_the_whole_file(parts):
    ids = [1, 504, 3458, 2114, 314, 253, 1345]
    whole, split = loaded(SMOLLM2), LoadedModel.load(parts[0])
    got = split.model.forward(ids, 0, split.model.new_cache(16))
    want = whole.model.forward(ids, 0, whole.model.new_cache(16))
    assert np.array_equal(got, want)


def test_a_missing_or_misnamed_part_is_named(parts, tmp_path):
    with pytest.raises(GGUFError, match="part 2 of a model split in 3: open its first part"):
        GGUFFile(parts[1])
    (tmp_path / parts[0].name).symlink_to(parts[0])
    (tmp_path / parts[2].name).symlink_to(parts[2])
    with pytest.raises(GGUFError, match=f"split part 2 of 3 is missing: {parts[1].name}"):
        GGUFFile(tmp_path / parts[0].name)
    (tmp_path / "renamed.gguf").symlink_to(parts[0])
    with pytest.raises(GGUFError, match="renamed.gguf: the first of 3 split parts, but not named as one"):
        GGUFFile(tmp_path / "renamed.gguf")
