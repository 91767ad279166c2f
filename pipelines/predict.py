"""Run a trained model of any family on new input (the family is read from the folder's model.json).

    python pipelines/predict.py --model models/<family>/<dataset>/<variant> "some text" [family options]
    python pipelines/predict.py --model DIR --help          (the options of that model's family)
    cat inputs.txt | python pipelines/predict.py --model DIR        (one input per line)
"""

from rnnlab.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
