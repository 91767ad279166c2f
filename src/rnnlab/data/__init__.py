"""Loading labelled text data (packaged, Hugging Face hub or local files) and splitting it."""
