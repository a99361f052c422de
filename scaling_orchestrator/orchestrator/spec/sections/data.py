"""The spec's `data:` section -> a DataSpec (scaling_orchestrator.models.data.tokens).

  corpus       sotu | pydoc | a .txt/.md file or folder | PATH:column (PATH a .parquet/.jsonl file,
               a glob "shards/*.parquet" or a folder of them) | file.bin of token ids
  tokenizer    bpe (trained here, saved as tokenizer.json) | byte | PATH/tokenizer.json (a Hugging
               Face fast tokenizer: vocabulary, separator and token dtype follow from it)
  vocab_size   bpe's vocabulary; a .bin's id bound
  val_fraction by document, by a hash of its text [0.05]; val_corpus: a separate validation corpus
  eos_token    a tokenizer.json's document separator [its <|endoftext|>, <|end_of_text|>, </s>, <eos>]
  token_dtype  a .bin's ids: uint16 | uint32 [its header, or models/data/binfile.py's rule]
  cache_dir    where prepared corpora live [$SCALING_CACHE or ~/.cache/scaling-orchestrator]; on a
               cluster, shared storage, so the driver's `scaling prepare` serves every node

Each field's own rule is DataSpec's; whether the corpus can be read is spec/paths.py's
check_spec_data (a listing, no text read).
"""

from __future__ import annotations

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.orchestrator.spec.validate import build, dataclass_fields


def parse_data(raw) -> DataSpec:
    """The `data:` section as a DataSpec; a bad field is one line naming data.<field>."""
    return build(DataSpec, dataclass_fields(raw if raw is not None else {}, "data", DataSpec), "data")
