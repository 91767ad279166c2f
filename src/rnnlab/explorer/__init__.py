"""The explorer: a local web page (Gradio) to try the trained models of every task family, with their
attention at work. `python pipelines/explore.py` (or `make explore`) starts it on 127.0.0.1.

- models.py: which models each family offers (the registry's champion, the model folders, the user's own);
- tab.py: what a family's tab provides (`Tab`); each family names its own in `TaskFamily.explorer_tab`
  (rnnlab/tasks/<family>/explorer_tab.py); a family without a tab, or without a trained model, gets a page
  that says what to do;
- app.py: the page (a tab per family, and the same input through two models side by side) and its server;
- browser.py: headless Chromium using the page as a user would (the browser test, the README's screenshots).
"""
