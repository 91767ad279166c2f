"""The names and checks the model building blocks accept, in a module without torch: config validation (every
stage, also the data stages) uses them without paying for the torch import."""

from rnnlab.errors import ConfigError

POOLINGS = ("last", "mean", "max", "attention")
ATTENTIONS = ("none", "additive", "dot", "general")
OUTPUT_LAYERS = ("full", "adaptive")  # a softmax over the whole vocabulary | an adaptive softmax
UNKNOWN_POLICIES = ("keep", "forbid", "copy")  # <unk> in a decoded output: keep | never emit | most-attended source word
CELL_IMPLS = ("fused", "gates")  # PyTorch's fused kernels | the cells from their gate equations (models/cells.py)
# The variants of each cell (Greff et al. 2017; Jozefowicz et al. 2015); all but vanilla need cell_impl=gates.
CELL_VARIANTS = {"rnn": ("vanilla",),
                 "lstm": ("vanilla", "no_forget_gate", "no_input_gate", "no_output_gate", "coupled",
                          "no_output_activation", "peepholes"),
                 "gru": ("vanilla", "no_reset_gate", "no_update_gate")}


def check_cell(cell: str, impl: str, variant: str, prefix: str = "model", forget_bias: float | None = None) -> None:
    """A cell implementation, variant and forget-gate bias that exist together: a clear error naming the keys
    otherwise."""
    if impl not in CELL_IMPLS:
        raise ConfigError(f"{prefix}.cell_impl={impl!r}; allowed: {', '.join(CELL_IMPLS)}")
    allowed = CELL_VARIANTS.get(cell, ("vanilla",))
    if variant not in allowed:
        raise ConfigError(f"{prefix}.cell_variant={variant!r} does not exist for {prefix}.cell={cell}; allowed for "
                          f"{cell}: {', '.join(allowed)}")
    if variant != "vanilla" and impl != "gates":
        raise ConfigError(f"{prefix}.cell_variant={variant} changes the cell's equations, which only the readable "
                          f"cells can: set {prefix}.cell_impl=gates (the fused kernels compute the vanilla cell)")
    # forget_bias initialises an LSTM's forget gate; GRU and RNN cells have none and ignore it, so that one
    # setting can cover a grid of cells. An LSTM variant without a forget-gate bias to set is refused.
    if forget_bias is not None and cell == "lstm":
        if variant in ("coupled", "no_forget_gate"):
            unused = "computes f = 1 - i" if variant == "coupled" else "has no forget gate (f = 1)"
            raise ConfigError(f"{prefix}.forget_bias={forget_bias} has no effect on {prefix}.cell_variant={variant}, "
                              f"which {unused}: leave {prefix}.forget_bias=null")


def check_adaptive_cutoffs(cutoffs, vocab_size: int, vocab_name: str) -> list[int]:
    """The adaptive softmax's cluster cutoffs, checked: increasing unique whole numbers in [1, vocab_size - 1].
    Used on the config before any work (against tokenizer.target.max_vocab_size) and by the model (against
    the vocabulary it was trained with)."""
    cutoffs = list(cutoffs or [])
    if (not cutoffs or not all(isinstance(c, int) and not isinstance(c, bool) for c in cutoffs)
            or cutoffs != sorted(set(cutoffs)) or cutoffs[0] < 1 or cutoffs[-1] >= vocab_size):
        raise ConfigError(f"model.adaptive_cutoffs={cutoffs}: give increasing, unique whole numbers between 1 and "
                          f"{vocab_name} - 1 ({vocab_size - 1}), e.g. [2000] or [1000,3000]")
    return [int(c) for c in cutoffs]


def check_filters(filters, max_chars: int, key: str = "char_filters") -> list[tuple[int, int]]:
    """[[width, count], ...] with every width <= max_chars: a clear error otherwise."""
    try:
        pairs = [(int(w), int(c)) for w, c in filters]
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={filters!r}: expected a list of [width, count] pairs, e.g. "
                          "[[1, 32], [2, 32], [3, 64]]") from None
    if not pairs or any(w < 1 or c < 1 for w, c in pairs):
        raise ConfigError(f"{key}={filters!r}: needs at least one [width, count] pair, each >= 1")
    if max(w for w, _ in pairs) > max_chars:
        raise ConfigError(f"{key}: a filter of width {max(w for w, _ in pairs)} is wider than max_word_chars="
                          f"{max_chars}; raise max_word_chars or narrow the filter")
    return pairs
