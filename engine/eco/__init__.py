"""ECO, embedding-corrupted prompts: the gate's prompt classifier and its lexicon (classifier,
lexicon), which tokens to corrupt (selection), how (corruptions), the per-request pipeline that
turns a prompt into corrupted embeddings (pipeline), and the zeroth-order search of its strength (zo)."""
