"""The matching task: fit a method once, score its embeddings by item-to-item matching (the
UniEmbedding protocol) and, for methods with a user encoder, by next-item retrieval."""
