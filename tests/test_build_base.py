"""kadapter-build-base's own checks (the full build is exercised by tests/test_demo.py and tests/test_world.py)."""
import pytest

from kadapter_fairseq.errors import KAdapterError
from kadapter_fairseq.tools.build_base import MIN_VALID_BLOCKS, check_valid_blocks


def test_a_validation_split_too_small_for_fairseqs_batches_is_refused_before_training(tmp_path):
    # masked_lm cuts blocks of max_positions - 1 tokens; fairseq-train found an empty valid set at 5 blocks
    valid = tmp_path / "valid.pieces"
    valid.write_text("a b c d e f g h i j k l\n" * 20)  # 20 lines x (12 pieces + </s>) = 260 tokens
    with pytest.raises(KAdapterError, match=r"260 tokens, 5 block\(s\) of --max-positions 64; fairseq-train needs at least 8"):
        check_valid_blocks(str(valid), 64)
    check_valid_blocks(str(valid), 33)  # 260 / 32 -> 9 blocks: enough
    assert MIN_VALID_BLOCKS == 8
