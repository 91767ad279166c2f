"""DVC stage `study_long_range`: the vanishing-gradient study of rnnlab.studies.long_range (label a sequence by
its first token after k distractors; accuracy against k and the loss gradient at each distance, for RNN, LSTM,
GRU and the gate ablations). The same arguments as `python -m rnnlab.studies.long_range --help`."""

from rnnlab.studies.long_range import main

if __name__ == "__main__":
    main()
