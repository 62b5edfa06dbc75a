"""The config groups of conf/, one module each (dataset, model, train, pretrain, quantize,
target), each with the small interface its options implement."""

# The components that make up one optimization sequence, in pipeline order.
SEQUENCE_KEYS: tuple[str, ...] = ("dataset", "model", "train", "pretrain", "quantize")
GROUPS: tuple[str, ...] = (*SEQUENCE_KEYS, "target")
