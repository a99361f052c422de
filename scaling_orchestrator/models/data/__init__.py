"""Text in, token ids out: corpora as documents, tokenizers, the cached split of token ids."""
