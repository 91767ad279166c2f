"""DVC stage `study_long_range`: the vanishing-gradient study of rnnlab.studies.long_range (label a sequence by
its first token after k distractors; accuracy against k and the loss gradient at each distance, for RNN, LSTM,
GRU and the gate ablations), with the settings of params.yaml's `long_range` node, into
<paths.reports>/studies/long_range:

    python pipelines/long_range.py --params params.yaml [long_range.steps=400 ...]

Any other arguments go to the study's own command line (`python -m rnnlab.studies.long_range --help`)."""

import sys

from rnnlab.studies.long_range import main


def arguments(argv: list[str]) -> list[str]:
    """The study's command line from `--params FILE [key=value ...]` (the `long_range` node and paths)."""
    from omegaconf import OmegaConf

    from rnnlab.errors import ConfigError

    if len(argv) < 2:
        raise ConfigError("--params needs a file, e.g. --params params.yaml")
    try:
        cfg = OmegaConf.merge(OmegaConf.load(argv[1]), OmegaConf.from_dotlist(argv[2:]))
    except Exception as err:  # noqa: BLE001 - yaml's and OmegaConf's errors alike: an unreadable file
        raise ConfigError(f"{argv[1]}: cannot read it ({' '.join(str(err).split())[:200]})") from None
    node = cfg.get("long_range")
    if node is None:
        raise ConfigError(f"{argv[1]} has no long_range node; compose it with `make params`")
    args = ["--out", f"{cfg.paths.reports}/studies/long_range"]
    for key, value in OmegaConf.to_container(node).items():
        flag = "--" + key.replace("_", "-")
        args += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return args


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "--params":
        from rnnlab.errors import RnnlabError

        try:
            argv = arguments(argv)
        except RnnlabError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    main(argv)
